// Kafka checks used by dev/stack, built against the stack's own kafka-clients jar.
//   meta BOOTSTRAP TIMEOUT_MS   fetch cluster metadata (Admin.describeCluster + listTopics)
//   txn  BOOTSTRAP TIMEOUT_MS   create a topic, commit one transaction and abort another, read back
//                               with isolation.level=read_committed (expects exactly the committed
//                               record), delete the topic.
import java.time.Duration;
import java.util.*;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.serialization.*;

public final class KafkaProbe {
    public static void main(String[] args) throws Exception {
        if (args.length != 3) { System.err.println("usage: KafkaProbe meta|txn BOOTSTRAP TIMEOUT_MS"); System.exit(2); }
        String bootstrap = args[1];
        int timeout = Integer.parseInt(args[2]);
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, timeout);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, Math.min(timeout, 5000));
        p.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, 250);
        try (Admin admin = Admin.create(p)) {
            DescribeClusterResult c = admin.describeCluster();
            String id = c.clusterId().get(timeout, TimeUnit.MILLISECONDS);
            int nodes = c.nodes().get(timeout, TimeUnit.MILLISECONDS).size();
            int topics = admin.listTopics().names().get(timeout, TimeUnit.MILLISECONDS).size();
            System.out.println("cluster " + id + ", " + nodes + " broker(s), " + topics + " topic(s)");
            if (args[0].equals("txn")) txn(admin, bootstrap, timeout);
        }
    }

    private static void txn(Admin admin, String bootstrap, int timeout) throws Exception {
        String topic = "hookline-stack-selftest-" + Long.toHexString(System.nanoTime());
        admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(timeout, TimeUnit.MILLISECONDS);
        try {
            Properties pp = new Properties();
            pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            pp.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, topic + "-tx");
            pp.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, timeout);
            try (Producer<String, String> prod = new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer())) {
                prod.initTransactions();
                prod.beginTransaction();
                prod.send(new ProducerRecord<>(topic, "k", "committed"));
                prod.commitTransaction();
                prod.beginTransaction();
                prod.send(new ProducerRecord<>(topic, "k", "aborted"));
                prod.flush();
                prod.abortTransaction();
            }
            Properties cp = new Properties();
            cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
            cp.put(ConsumerConfig.GROUP_ID_CONFIG, topic + "-g");
            cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            cp.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
            List<String> got = new ArrayList<>();
            try (Consumer<String, String> cons = new KafkaConsumer<>(cp, new StringDeserializer(), new StringDeserializer())) {
                cons.subscribe(List.of(topic));
                long end = System.currentTimeMillis() + timeout;
                while (got.isEmpty() && System.currentTimeMillis() < end)
                    for (ConsumerRecord<String, String> r : cons.poll(Duration.ofMillis(500))) got.add(r.value());
                cons.poll(Duration.ofMillis(1000)).forEach(r -> got.add(r.value()));
                cons.commitSync();
            }
            if (!got.equals(List.of("committed"))) { System.err.println("KafkaProbe: read_committed saw " + got); System.exit(1); }
            System.out.println("transactions ok (committed record seen, aborted record hidden, consumer group committed)");
        } finally {
            admin.deleteTopics(List.of(topic)).all().get(timeout, TimeUnit.MILLISECONDS);
        }
    }
}
