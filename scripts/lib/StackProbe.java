// Small Kafka admin helper for scripts/stack.
//
// Run with the JDK's single-file source launcher against the broker's jars:
//   java -cp '<kafka libs>/*' scripts/lib/StackProbe.java <command> <bootstrap> [args...]
//
// Commands:
//   wait <bootstrap> <timeout-seconds> [pid]
//       Poll until the broker answers describeCluster() with at least one node.
//       Exit 0 when ready, 3 on timeout, 2 as soon as <pid> (the broker process) is gone.
//   list-topics <bootstrap>                     Print non-internal topic names, sorted.
//   create-topic <bootstrap> <name> [partitions] [replication]
//       Create a topic; an already existing topic is not an error.
//   describe-topic <bootstrap> <name>           Print partitions=N and the topic's own
//                                               (non-default) configs as key=value lines.
//   delete-topic <bootstrap> <name>             Delete a topic; a missing one is not an error.
//   scram-user <bootstrap> <user> <password-file>
//       Create or update a SCRAM-SHA-512 user (`up --secure`).
//   grant <bootstrap> producer|processor|replay <user> <topic-prefix> <name>
//       Allow <user> exactly what that kind of service needs on topics starting with
//       <topic-prefix>; <name> is the producer's transactional id, or the processor's or
//       oda-replay's consumer group (their transactional ids start with it).
//
// Any other failure exits 1 with a message on stderr (usage errors exit 2).

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;

public class StackProbe {

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            usage();
        }
        String command = args[0];
        String bootstrap = args[1];
        switch (command) {
            case "wait":
                if (args.length < 3) usage();
                long pid = args.length > 3 ? Long.parseLong(args[3]) : -1;
                System.exit(waitReady(bootstrap, Long.parseLong(args[2]), pid));
                break;
            case "list-topics":
                try (Admin admin = admin(bootstrap, 15_000)) {
                    for (String name : new TreeSet<>(admin.listTopics().names().get(20, TimeUnit.SECONDS))) {
                        System.out.println(name);
                    }
                }
                break;
            case "create-topic": {
                if (args.length < 3) usage();
                int partitions = args.length > 3 ? Integer.parseInt(args[3]) : 1;
                short replication = args.length > 4 ? Short.parseShort(args[4]) : 1;
                try (Admin admin = admin(bootstrap, 15_000)) {
                    NewTopic topic = new NewTopic(args[2], Optional.of(partitions), Optional.of(replication));
                    admin.createTopics(List.of(topic)).all().get(20, TimeUnit.SECONDS);
                    System.out.println("created " + args[2]);
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof TopicExistsException)) throw e;
                    System.out.println("exists " + args[2]);
                }
                break;
            }
            case "describe-topic": {
                if (args.length < 3) usage();
                try (Admin admin = admin(bootstrap, 15_000)) {
                    var description = admin.describeTopics(List.of(args[2])).allTopicNames()
                            .get(20, TimeUnit.SECONDS).get(args[2]);
                    System.out.println("partitions=" + description.partitions().size());
                    var resource = new ConfigResource(ConfigResource.Type.TOPIC, args[2]);
                    var config = admin.describeConfigs(List.of(resource)).all().get(20, TimeUnit.SECONDS).get(resource);
                    for (ConfigEntry entry : config.entries()) {
                        if (entry.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG) {
                            System.out.println(entry.name() + "=" + entry.value());
                        }
                    }
                }
                break;
            }
            case "delete-topic": {
                if (args.length < 3) usage();
                try (Admin admin = admin(bootstrap, 15_000)) {
                    admin.deleteTopics(List.of(args[2])).all().get(20, TimeUnit.SECONDS);
                    System.out.println("deleted " + args[2]);
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof UnknownTopicOrPartitionException)) throw e;
                    System.out.println("absent " + args[2]);
                }
                break;
            }
            case "scram-user": {
                if (args.length < 4) usage();
                String password = Files.readString(Path.of(args[3])).strip();
                try (Admin admin = admin(bootstrap, 15_000)) {
                    var upsert = new UserScramCredentialUpsertion(args[2],
                            new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password);
                    admin.alterUserScramCredentials(List.of(upsert)).all().get(20, TimeUnit.SECONDS);
                    System.out.println("scram user " + args[2]);
                }
                break;
            }
            case "grant": {
                if (args.length < 6) usage();
                List<AclBinding> acls = grants(args[2], "User:" + args[3], args[4], args[5]);
                try (Admin admin = admin(bootstrap, 15_000)) {
                    admin.createAcls(acls).all().get(20, TimeUnit.SECONDS);
                    System.out.println("granted " + args[2] + " to User:" + args[3] + " (" + acls.size() + " ACLs)");
                }
                break;
            }
            default:
                usage();
        }
    }

    /** What each kind of service needs, and nothing else. */
    private static List<AclBinding> grants(String role, String principal, String topicPrefix, String name) {
        List<AclBinding> acls = new ArrayList<>();
        ResourcePattern topics = new ResourcePattern(ResourceType.TOPIC, topicPrefix, PatternType.PREFIXED);
        // Every kind reads and writes its own topics, creates the missing ones and reads
        // their configs (max.message.bytes) at start.
        for (AclOperation op : List.of(AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE,
                AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS)) {
            acls.add(allow(topics, principal, op));
        }
        switch (role) {
            case "producer": {
                // Its transactional id, and the group that shows a running service to
                // `oda-producer snapshot`.
                var txn = new ResourcePattern(ResourceType.TRANSACTIONAL_ID, name, PatternType.LITERAL);
                acls.add(allow(txn, principal, AclOperation.WRITE));
                acls.add(allow(txn, principal, AclOperation.DESCRIBE));
                // The restore reader's group id is fixed; it commits nothing.
                for (String group : List.of(name + "-signals", "oda-producer-restore")) {
                    var pattern = new ResourcePattern(ResourceType.GROUP, group, PatternType.LITERAL);
                    acls.add(allow(pattern, principal, AclOperation.READ));
                    acls.add(allow(pattern, principal, AclOperation.DESCRIBE));
                }
                break;
            }
            case "processor":
            case "replay": {
                var group = new ResourcePattern(ResourceType.GROUP, name, PatternType.LITERAL);
                acls.add(allow(group, principal, AclOperation.READ));
                acls.add(allow(group, principal, AclOperation.DESCRIBE));
                // Readers (lookup tables, changelogs; oda-replay's copy, scan and log
                // readers) use fixed group ids and commit nothing.
                String readerPrefix = role.equals("replay") ? "oda-replay" : "oda-";
                var readers = new ResourcePattern(ResourceType.GROUP, readerPrefix, PatternType.PREFIXED);
                acls.add(allow(readers, principal, AclOperation.READ));
                acls.add(allow(readers, principal, AclOperation.DESCRIBE));
                if (role.equals("replay")) {
                    // `reset` moves the group's offsets.
                    acls.add(allow(group, principal, AclOperation.DELETE));
                }
                // A processor's transactional ids start with its group; oda-replay's
                // (copy, redrive) with "oda-replay".
                String txnPrefix = role.equals("replay") ? "oda-replay" : name;
                var txn = new ResourcePattern(ResourceType.TRANSACTIONAL_ID, txnPrefix, PatternType.PREFIXED);
                acls.add(allow(txn, principal, AclOperation.WRITE));
                acls.add(allow(txn, principal, AclOperation.DESCRIBE));
                break;
            }
            default:
                usage();
        }
        return acls;
    }

    private static AclBinding allow(ResourcePattern pattern, String principal, AclOperation op) {
        return new AclBinding(pattern, new AccessControlEntry(principal, "*", op, AclPermissionType.ALLOW));
    }

    private static Admin admin(String bootstrap, int timeoutMs) {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "stack-probe");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, Math.min(timeoutMs, 5_000));
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, timeoutMs);
        // Keep reconnect attempts frequent: while waiting for a starting broker we want
        // to notice it quickly, not after an exponential backoff.
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MS_CONFIG, 100);
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, 500);
        return Admin.create(props);
    }

    /** One admin client, polled until the cluster reports a node, the deadline passes or the broker dies. */
    private static int waitReady(String bootstrap, long timeoutSeconds, long pid) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutSeconds);
        Optional<ProcessHandle> broker = pid > 0 ? ProcessHandle.of(pid) : Optional.empty();
        if (pid > 0 && !isAlive(broker)) {
            return 2;
        }
        try (Admin admin = admin(bootstrap, 3_000)) {
            while (System.nanoTime() < deadline) {
                if (pid > 0 && !isAlive(broker)) {
                    return 2;
                }
                try {
                    var nodes = admin.describeCluster().nodes().get(3, TimeUnit.SECONDS);
                    if (nodes != null && !nodes.isEmpty()) {
                        // A node list means the broker is registered and unfenced; listing topics
                        // additionally proves the metadata path that clients use works.
                        admin.listTopics().names().get(3, TimeUnit.SECONDS);
                        Node node = nodes.iterator().next();
                        System.out.println("ready: node " + node.id() + " at " + node.host() + ":" + node.port());
                        return 0;
                    }
                } catch (Exception e) {
                    // Not up yet; retry until the deadline.
                }
                Thread.sleep(250);
            }
        }
        return 3;
    }

    /**
     * A process that exited but was not reaped yet (a zombie, when nothing reaps orphans)
     * still counts as alive for ProcessHandle; its /proc cmdline is empty, though.
     */
    private static boolean isAlive(Optional<ProcessHandle> process) {
        if (process.isEmpty() || !process.get().isAlive()) {
            return false;
        }
        try {
            return Files.readAllBytes(Path.of("/proc/" + process.get().pid() + "/cmdline")).length > 0;
        } catch (IOException e) {
            return false;
        }
    }

    private static void usage() {
        System.err.println("usage: StackProbe wait <bootstrap> <timeout-seconds> [pid]");
        System.err.println("       StackProbe list-topics <bootstrap>");
        System.err.println("       StackProbe create-topic <bootstrap> <name> [partitions] [replication]");
        System.err.println("       StackProbe describe-topic <bootstrap> <name>");
        System.err.println("       StackProbe delete-topic <bootstrap> <name>");
        System.err.println("       StackProbe scram-user <bootstrap> <user> <password-file>");
        System.err.println("       StackProbe grant <bootstrap> producer|processor|replay <user> <topic-prefix> <name>");
        System.exit(2);
    }
}
