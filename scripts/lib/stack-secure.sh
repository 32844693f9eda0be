# shellcheck shell=bash
# `scripts/stack up --secure`: a throwaway CA, TLS for the brokers and the registry,
# SCRAM users and ACLs. Sourced by scripts/stack after stack-common.sh.
#
# Each broker keeps its PLAINTEXT listener for the stack's own tooling and the registry
# (its principal, ANONYMOUS, is a super user: close that port in anything but a laptop
# stack), and gets two more:
#   SASL_SSL  (SCRAM-SHA-512 over TLS)      on its port + 2
#   SSL       (mutual TLS, client certs)    on its port + 3
# Everything lives under $STACK_DIR/tls and $STACK_DIR/secrets, made once and kept
# across down/up (`reset` deletes them with the rest).

TLS_DIR=$STACK_DIR/tls
SECRETS_DIR=$STACK_DIR/secrets
SECURE_FILE=$STACK_DIR/secure
# The users the stack creates, one per kind of service, each with a password (SASL) and
# a client certificate (mTLS) whose CN is the same name.
SECURE_USERS=(oda-producer oda-processor oda-replay)
# The topic prefix, producer identity and processor groups the default grants cover; a
# test or a second deployment grants its own with `scripts/stack grant`.
SECURE_PREFIX=${SECURE_PREFIX:-parliament}
SECURE_PROCESSOR_GROUPS=(oda-normalize oda-votes oda-history oda-passthrough)
CERT_DAYS=825

SECURE=0
read_secure() {
    SECURE=0
    if [[ -s $SECURE_FILE ]]; then read -r SECURE <"$SECURE_FILE"; fi
    return 0
}

sasl_port() { echo $(($1 + 2)); }
mtls_port() { echo $(($1 + 3)); }

require_openssl() {
    command -v openssl >/dev/null 2>&1 || die "openssl is missing (Debian: apt-get install openssl)"
}

# One key and certificate signed by a CA. Keys are unencrypted PKCS#8, which both Kafka's
# PEM keystore and librdkafka read.
issue_cert() { # ca-name name subject-cn extension-file|-
    local ca=$1 name=$2 cn=$3 ext=$4 extra=()
    [[ -s $TLS_DIR/$name.crt ]] && return 0
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$TLS_DIR/$name.key" 2>/dev/null
    openssl req -new -key "$TLS_DIR/$name.key" -subj "/CN=$cn/O=oda-cdc stack" \
        -out "$TLS_DIR/$name.csr" 2>/dev/null
    [[ $ext != - ]] && extra=(-extfile "$ext")
    openssl x509 -req -in "$TLS_DIR/$name.csr" -CA "$TLS_DIR/$ca.crt" -CAkey "$TLS_DIR/$ca.key" \
        -CAcreateserial -days "$CERT_DAYS" -sha256 -out "$TLS_DIR/$name.crt" "${extra[@]}" 2>/dev/null ||
        die "could not sign the certificate for $name"
    rm -f -- "$TLS_DIR/$name.csr"
    chmod 600 "$TLS_DIR/$name.key"
}

make_ca() { # name
    [[ -s $TLS_DIR/$1.crt ]] && return 0
    openssl req -x509 -newkey rsa:2048 -nodes -days "$CERT_DAYS" -sha256 \
        -subj "/CN=$1/O=oda-cdc stack" -keyout "$TLS_DIR/$1.key" -out "$TLS_DIR/$1.crt" 2>/dev/null ||
        die "could not make the CA $1"
    chmod 600 "$TLS_DIR/$1.key"
}

# The CA, a server certificate for every broker and the registry (they share a host), a
# client certificate per user, and, for tests of the refusal, a second CA with a client
# certificate of its own.
make_tls() {
    require_openssl
    mkdir -p -- "$TLS_DIR"
    chmod 700 "$TLS_DIR"
    make_ca ca
    local ext=$TLS_DIR/server.ext user
    printf 'subjectAltName=IP:%s,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' \
        "$STACK_HOST" >"$ext"
    issue_cert ca server localhost "$ext"
    # Kafka's PEM keystore wants the key and its chain in one file.
    cat "$TLS_DIR/server.key" "$TLS_DIR/server.crt" >"$TLS_DIR/server-keystore.pem"
    chmod 600 "$TLS_DIR/server-keystore.pem"
    printf 'extendedKeyUsage=clientAuth\n' >"$TLS_DIR/client.ext"
    for user in "${SECURE_USERS[@]}"; do
        issue_cert ca "$user" "$user" "$TLS_DIR/client.ext"
    done
    make_ca other-ca
    issue_cert other-ca stranger oda-producer "$TLS_DIR/client.ext"
}

# A random password per user, kept in a file only its owner reads.
make_passwords() {
    local user file
    mkdir -p -- "$SECRETS_DIR"
    chmod 700 "$SECRETS_DIR"
    for user in "${SECURE_USERS[@]}"; do
        file=$SECRETS_DIR/$user.password
        [[ -s $file ]] && continue
        (umask 077 && openssl rand -hex 24 >"$file")
    done
}

# The lines a broker's server.properties gets in secure mode.
secure_broker_config() {
    cat <<EOF

# --- secure mode (scripts/stack up --secure) ---
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$TLS_DIR/server-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.crt
ssl.endpoint.identification.algorithm=https
listener.name.ssl.ssl.client.auth=required
# A client certificate's CN is its user name: CN=oda-producer is User:oda-producer
# (Java writes the subject most significant part last: O=…,CN=oda-producer).
ssl.principal.mapping.rules=RULE:^(.*,)?CN=([^,]+)(,.*)?\$/\$2/,DEFAULT
EOF
    secure_authorizer_config
}

# Brokers and the controller authorize with the same ACLs (kept in the metadata log).
secure_authorizer_config() {
    cat <<EOF
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
# The PLAINTEXT and CONTROLLER listeners (stack tooling, the registry, the brokers among
# themselves) authenticate nobody; on this laptop stack they are trusted.
super.users=User:ANONYMOUS
EOF
}

# Users and the default grants; safe to repeat on every `up`.
secure_accounts() { # plaintext-bootstrap
    local bootstrap=$1 user group
    for user in "${SECURE_USERS[@]}"; do
        probe scram-user "$bootstrap" "$user" "$SECRETS_DIR/$user.password" >/dev/null ||
            die "could not create the SCRAM user $user"
    done
    probe grant "$bootstrap" producer oda-producer "$SECURE_PREFIX" oda-producer >/dev/null ||
        die "could not grant the producer's ACLs"
    for group in "${SECURE_PROCESSOR_GROUPS[@]}"; do
        probe grant "$bootstrap" processor oda-processor "$SECURE_PREFIX" "$group" >/dev/null ||
            die "could not grant the processors' ACLs"
    done
    probe grant "$bootstrap" replay oda-replay "$SECURE_PREFIX" oda-replay >/dev/null ||
        die "could not grant oda-replay's ACLs"
    say "secure: users ${SECURE_USERS[*]} with ACLs on topics $SECURE_PREFIX*"
}

# How a client reaches the secured stack: printed by `up` and `secure-env`.
print_secure_settings() { # sasl-bootstrap mtls-bootstrap
    cat <<EOF

SASL_SSL (SCRAM-SHA-512), e.g. for oda-producer:
  KAFKA_BROKERS=$1
  ODA_CDC_KAFKA__PROPERTIES__SECURITY_PROTOCOL=SASL_SSL
  ODA_CDC_KAFKA__PROPERTIES__SASL_MECHANISM=SCRAM-SHA-512
  ODA_CDC_KAFKA__PROPERTIES__SASL_USERNAME=oda-producer
  ODA_CDC_KAFKA__PROPERTIES__SASL_PASSWORD_FILE=$SECRETS_DIR/oda-producer.password
  ODA_CDC_KAFKA__PROPERTIES__SSL_CA_LOCATION=$TLS_DIR/ca.crt
mutual TLS:
  KAFKA_BROKERS=$2
  ODA_CDC_KAFKA__PROPERTIES__SECURITY_PROTOCOL=SSL
  ODA_CDC_KAFKA__PROPERTIES__SSL_CA_LOCATION=$TLS_DIR/ca.crt
  ODA_CDC_KAFKA__PROPERTIES__SSL_CERTIFICATE_LOCATION=$TLS_DIR/oda-producer.crt
  ODA_CDC_KAFKA__PROPERTIES__SSL_KEY_LOCATION=$TLS_DIR/oda-producer.key
schema registry over HTTPS:
  SCHEMA_REGISTRY_URL=$CCOMPAT_URL
  ODA_CDC_SCHEMA_REGISTRY__CA_FILE=$TLS_DIR/ca.crt
EOF
}
