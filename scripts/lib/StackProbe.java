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
//
// Any other failure exits 1 with a message on stderr (usage errors exit 2).

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
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
            default:
                usage();
        }
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
        System.exit(2);
    }
}
