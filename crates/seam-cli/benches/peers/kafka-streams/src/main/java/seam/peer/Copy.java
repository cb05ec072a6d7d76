package seam.peer;

import java.io.ByteArrayOutputStream;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * seam's translator workload as a Kafka Streams app: decode each Confluent-framed Avro item,
 * read-modify-write the subject's entry in a persistent state store (a later seq wins), and emit
 * an Avro "copied" record, exactly once (exactly_once_v2). Prints its CPU time and wall time from
 * the record after the first WARMUP ones (the JIT's warm-up is not what it costs per record) to
 * the last once it has processed the expected count, then exits.
 *
 * Usage: Copy BOOTSTRAP INPUT OUTPUT APPLICATION_ID STATE_DIR EXPECTED [client.properties [WARMUP]]
 */
public final class Copy {
    static final Schema ITEM = new Schema.Parser().parse(
        "{\"type\":\"record\",\"name\":\"Item\",\"namespace\":\"seam.bench\",\"fields\":["
        + "{\"name\":\"subject\",\"type\":\"string\"},{\"name\":\"seq\",\"type\":\"long\"},"
        + "{\"name\":\"sent_us\",\"type\":\"long\"},{\"name\":\"payload\",\"type\":\"string\"}]}");
    static final Schema COPIED = new Schema.Parser().parse(
        "{\"type\":\"record\",\"name\":\"Copied\",\"namespace\":\"seam.bench\",\"fields\":["
        + "{\"name\":\"subject\",\"type\":\"string\"},{\"name\":\"seq\",\"type\":\"long\"},"
        + "{\"name\":\"bytes\",\"type\":\"int\"}]}");

    static final AtomicLong processed = new AtomicLong();
    static volatile long firstCpu = -1;
    static volatile long firstWall = -1;
    static long warmup = 0;

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], input = args[1], output = args[2], appId = args[3], stateDir = args[4];
        long expected = Long.parseLong(args[5]);
        if (args.length > 7) {
            warmup = Long.parseLong(args[7]);
        }
        Properties p = new Properties();
        if (args.length > 6) {
            try (var in = new java.io.FileInputStream(args[6])) {
                p.load(in);
            }
        }
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);

        StreamsBuilder builder = new StreamsBuilder();
        builder.addStateStore(Stores.keyValueStoreBuilder(
            Stores.persistentKeyValueStore("copies"), Serdes.String(), Serdes.ByteArray()));
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.ByteArray()))
            .process(CopyProcessor::new, "copies")
            .to(output, Produced.with(Serdes.String(), Serdes.ByteArray()));

        CountDownLatch done = new CountDownLatch(1);
        KafkaStreams streams = new KafkaStreams(builder.build(), p);
        streams.setUncaughtExceptionHandler(e -> {
            e.printStackTrace();
            done.countDown();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.start();
        System.out.println("ready");
        System.out.flush();
        var os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
        while (processed.get() < expected && done.getCount() > 0) {
            Thread.sleep(5);
        }
        // Exactly once: the last records count once their transaction commits (commit.interval.ms).
        streams.close(java.time.Duration.ofSeconds(60));
        long cpu = os.getProcessCpuTime() - firstCpu;
        long wall = System.nanoTime() - firstWall;
        System.out.println("processed=" + (processed.get() - warmup) + " cpu_ns=" + cpu + " wall_ns=" + wall);
    }

    static final class CopyProcessor implements Processor<String, byte[], String, byte[]> {
        private ProcessorContext<String, byte[]> context;
        private KeyValueStore<String, byte[]> store;
        private final GenericDatumReader<GenericRecord> reader = new GenericDatumReader<>(ITEM);
        private final GenericDatumWriter<GenericRecord> writer = new GenericDatumWriter<>(COPIED);
        private BinaryDecoder decoder;
        private BinaryEncoder encoder;

        @Override
        public void init(ProcessorContext<String, byte[]> context) {
            this.context = context;
            this.store = context.getStateStore("copies");
        }

        @Override
        public void process(Record<String, byte[]> record) {
            if (firstCpu < 0 && processed.get() >= warmup) {
                var os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
                firstCpu = os.getProcessCpuTime();
                firstWall = System.nanoTime();
            }
            try {
                byte[] v = record.value();
                // Confluent framing: magic byte 0, 4-byte schema id, Avro body.
                decoder = DecoderFactory.get().binaryDecoder(v, 5, v.length - 5, decoder);
                GenericRecord item = reader.read(null, decoder);
                String subject = item.get("subject").toString();
                long seq = (Long) item.get("seq");
                int bytes = item.get("payload").toString().length();
                byte[] old = store.get(subject);
                if (old == null || ByteBuffer.wrap(old).getLong() <= seq) {
                    store.put(subject, ByteBuffer.allocate(12).putLong(seq).putInt(bytes).array());
                    GenericRecord out = new GenericData.Record(COPIED);
                    out.put("subject", subject);
                    out.put("seq", seq);
                    out.put("bytes", bytes);
                    ByteArrayOutputStream buf = new ByteArrayOutputStream(64);
                    buf.write(0);
                    buf.write(new byte[] {0, 0, 0, 0});
                    encoder = EncoderFactory.get().binaryEncoder(buf, encoder);
                    writer.write(out, encoder);
                    encoder.flush();
                    context.forward(record.withValue(buf.toByteArray()));
                }
                processed.incrementAndGet();
            } catch (java.io.IOException e) {
                throw new RuntimeException(e);
            }
        }
    }
}
