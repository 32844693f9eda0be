# shellcheck shell=bash
# Download-once provisioning of Kafka jars and the Apicurio Registry into the cache.
# Sourced by scripts/stack after stack-common.sh.
#
# Each provisioned directory gets a marker file written only after everything else
# succeeded; a directory without a matching marker is half-finished and is redone.
# Markers hold a signature of what was provisioned, so changing a recipe below (another
# dependency, a new version) provisions again instead of silently reusing old jars.

KAFKA_CACHE=$STACK_CACHE_DIR/kafka-$KAFKA_VERSION

# Print the signature of a recipe text.
recipe_signature() { sha256sum | cut -c1-16; }

marker_matches() { # marker-file signature
    [[ -r $1 ]] && [[ $(<"$1") == "$2" ]]
}

# A throw-away POM whose runtime dependency closure is exactly the jars we want.
kafka_pom() { # artifact-id...
    local artifact
    cat <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.oda-cdc.stack</groupId>
  <artifactId>kafka-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
EOF
    for artifact in "$@"; do
        cat <<EOF
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>$artifact</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
EOF
    done
    cat <<EOF
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$KAFKA_LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
}

# Resolve a POM's runtime closure into $KAFKA_CACHE/<name> (once).
provision_jar_dir() { # name artifact-id...
    local name=$1 dir pom sig work log
    shift
    dir=$KAFKA_CACHE/$name
    pom=$(kafka_pom "$@")
    sig=$(recipe_signature <<<"$pom")
    marker_matches "$dir/.complete" "$sig" && return 0

    take_lock "$STACK_CACHE_DIR/.lock" 9
    marker_matches "$dir/.complete" "$sig" && return 0 # someone else just did it
    require_maven "Kafka $KAFKA_VERSION ($*)"
    require_free_space "$STACK_CACHE_DIR"
    say "provisioning Kafka $KAFKA_VERSION $name ($*) into $dir"
    work=$KAFKA_CACHE/.work-$name
    log=$KAFKA_CACHE/provision-$name.log
    rm -rf -- "$work" "$dir"
    mkdir -p -- "$work"
    printf '%s\n' "$pom" >"$work/pom.xml"
    if ! mvn -B -q -f "$work/pom.xml" "$MAVEN_DEPENDENCY_PLUGIN:copy-dependencies" \
        -DincludeScope=runtime -DoutputDirectory="$work/jars" >"$log" 2>&1; then
        show_log_tail "$log" 30
        die "Maven could not download Kafka $KAFKA_VERSION $name (full log: $log)"
    fi
    mv -- "$work/jars" "$dir"
    rm -rf -- "$work"
    printf '%s\n' "$sig" >"$dir/.complete"
    say "provisioned $(find "$dir" -name '*.jar' | wc -l) jars into $dir"
}

# Jars to run the broker (kafka.Kafka, StorageTool) and the admin probe.
ensure_kafka_libs() {
    provision_jar_dir libs "kafka_2.13"
    KAFKA_LIBS=$KAFKA_CACHE/libs
}

# Kafka's command-line tools (ProducerPerformance, ConsumerPerformance, ...). Large and
# only needed by benchmarks, so only provisioned on request.
ensure_kafka_tools() {
    provision_jar_dir tools-libs "kafka-tools"
    KAFKA_TOOLS_LIBS=$KAFKA_CACHE/tools-libs
}

# Print an explicit ':'-joined jar list (a `dir/*` wildcard would be expanded by any
# shell that forgets to quote it).
jar_classpath() { # dir
    local jar cp=
    for jar in "$1"/*.jar; do cp+=${cp:+:}$jar; done
    printf '%s\n' "$cp"
}

# ---------------------------------------------------------------------------------------
# Apicurio Registry
# ---------------------------------------------------------------------------------------

# Java release an Apicurio version needs.
registry_min_java() { # version
    case $1 in
    2.* | 3.0.* | 3.1.*) echo 17 ;;
    *) echo 21 ;;
    esac
}

# Choose the Apicurio version and the java to run it with; sets REGISTRY_VERSION and
# REGISTRY_JAVA. Honours REGISTRY_JAVA_HOME and REGISTRY_VERSION from the environment.
select_registry() {
    local want=${REGISTRY_VERSION:-} java major
    if [[ -n ${REGISTRY_JAVA_HOME:-} ]]; then
        java=$REGISTRY_JAVA_HOME/bin/java
        [[ -x $java ]] || die "REGISTRY_JAVA_HOME=$REGISTRY_JAVA_HOME has no bin/java"
        major=$(java_major "$java") || die "cannot determine the version of $java"
        if [[ -z $want ]]; then
            if ((major >= $(registry_min_java "$REGISTRY_DEFAULT_VERSION"))); then
                want=$REGISTRY_DEFAULT_VERSION
            else
                want=$REGISTRY_FALLBACK_VERSION
            fi
        fi
        ((major >= $(registry_min_java "$want"))) ||
            die "Apicurio Registry $want needs Java $(registry_min_java "$want"), but REGISTRY_JAVA_HOME is Java $major"
    elif [[ -n $want ]]; then
        java=$(find_java_at_least "$(registry_min_java "$want")") ||
            die "Apicurio Registry $want needs Java $(registry_min_java "$want") or newer; none found (set REGISTRY_JAVA_HOME)"
    elif java=$(find_java_at_least "$(registry_min_java "$REGISTRY_DEFAULT_VERSION")"); then
        want=$REGISTRY_DEFAULT_VERSION
    elif java=$(find_java_at_least "$(registry_min_java "$REGISTRY_FALLBACK_VERSION")"); then
        want=$REGISTRY_FALLBACK_VERSION
        say "no Java $(registry_min_java "$REGISTRY_DEFAULT_VERSION")+ found (set REGISTRY_JAVA_HOME to use one);" \
            "falling back to Apicurio Registry $want on $java"
    else
        die "no Java 17 or newer found for the schema registry (set REGISTRY_JAVA_HOME)"
    fi
    REGISTRY_VERSION=$want
    REGISTRY_JAVA=$java
}

# Download io.apicurio:apicurio-registry-app:<version>:tar.gz:all to the given file:
# through Maven when possible (honours the user's mirrors and ~/.m2), else straight from
# Maven Central with a SHA-1 check.
download_registry_tarball() { # version dest-file log
    local version=$1 dest=$2 log=$3 dir url sum expected
    dir=$(dirname -- "$dest")
    if command -v mvn >/dev/null &&
        mvn -B -q "$MAVEN_DEPENDENCY_PLUGIN:copy" \
            -Dartifact="io.apicurio:apicurio-registry-app:$version:tar.gz:all" \
            -DoutputDirectory="$dir" >"$log" 2>&1 &&
        [[ -s $dir/apicurio-registry-app-$version-all.tar.gz ]]; then
        mv -f -- "$dir/apicurio-registry-app-$version-all.tar.gz" "$dest"
        return 0
    fi
    require_curl
    say "Maven could not fetch Apicurio Registry $version (see $log); downloading it from $MAVEN_CENTRAL_URL"
    url=$MAVEN_CENTRAL_URL/io/apicurio/apicurio-registry-app/$version/apicurio-registry-app-$version-all.tar.gz
    curl -fsSL --retry 3 -o "$dest" "$url" >>"$log" 2>&1 || die "download failed: $url"
    expected=$(curl -fsSL --retry 3 "$url.sha1" 2>>"$log") || die "download failed: $url.sha1"
    sum=$(sha1sum -- "$dest") || die "cannot checksum $dest"
    [[ ${sum%% *} == "${expected:0:40}" ]] || die "checksum mismatch for $url"
}

# Provision Apicurio Registry $REGISTRY_VERSION (once) and set REGISTRY_JAR to its
# launcher: quarkus-run.jar (3.1+) or *-runner.jar with lib/ beside it (3.0.x).
ensure_registry() {
    local home=$STACK_CACHE_DIR/apicurio-$REGISTRY_VERSION work log
    if [[ ! -e $home/.complete ]]; then
        take_lock "$STACK_CACHE_DIR/.lock" 9
    fi
    if [[ ! -e $home/.complete ]]; then
        require_free_space "$STACK_CACHE_DIR"
        say "provisioning Apicurio Registry $REGISTRY_VERSION into $home"
        work=$home/.work
        log=$home/provision.log
        rm -rf -- "$work" "$home/app"
        mkdir -p -- "$work/app"
        download_registry_tarball "$REGISTRY_VERSION" "$work/registry.tar.gz" "$log"
        tar -xzf "$work/registry.tar.gz" -C "$work/app" || die "cannot unpack $work/registry.tar.gz"
        mv -- "$work/app" "$home/app"
        rm -rf -- "$work"
        touch -- "$home/.complete"
    fi
    REGISTRY_JAR=
    local candidate
    for candidate in "$home"/app/quarkus-run.jar "$home"/app/*/quarkus-run.jar \
        "$home"/app/*-runner.jar "$home"/app/*/*-runner.jar; do
        if [[ -f $candidate ]]; then
            REGISTRY_JAR=$candidate
            break
        fi
    done
    [[ -n $REGISTRY_JAR ]] ||
        die "no quarkus-run.jar or *-runner.jar in $home/app; delete $home to provision again"
}
