package io.creatorpulse.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.processor.api.FixedKeyProcessor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessorContext;
import org.apache.kafka.streams.processor.api.FixedKeyRecord;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.streams.state.WindowStore;

/**
 * The creatorpulse worker's window totals, written as a Kafka Streams user would.
 *
 * <p>Records hold one JSON event or a JSON array of events of the record key's creator
 * (schemas/events.py). Every event is parsed and checked, and placed by its own {@code ts}: a
 * batch record spans up to two minutes, so windowing by the record timestamp would put events in
 * the wrong windows. As in the worker, a record's events are first summed per campaign and
 * 60 s bucket, and each sum goes on with its newest event time as its timestamp. Per (campaign,
 * creator) and window size (60 s, 3600 s,
 * 600 s grace) the 11 counters of schemas/metrics.py are summed in tumbling event-time windows;
 * the changed windows go to the output topic at every commit (the record cache), as the worker
 * writes its changed windows at every flush.
 *
 * <p>The grouping key stays the record key (the creator id), so no repartition topic is needed,
 * as the worker needs none when records are keyed by creator; a window's value keeps one total
 * per campaign, so a creator in two campaigns still gets two rows.
 *
 * <p>It prints one JSON line on stdout once it has read {@code --expect} events and a commit
 * covered them: the process's CPU ticks from /proc/self/stat at the first record and at that
 * commit, and the wall time between them. It then runs until it is stopped (SIGTERM).
 */
public final class WindowTotals {
  /** schemas/metrics.py METRICS, in that order. */
  static final String[] METRICS = {
    "views", "likes", "comments", "shares", "saves", "watch_time_ms",
    "completions", "replays", "clicks", "conversions", "revenue_cents",
  };
  static final int N = METRICS.length;
  static final ObjectMapper JSON = new ObjectMapper();

  static final AtomicLong EVENTS = new AtomicLong();
  static final AtomicLong RECORDS = new AtomicLong();
  static final AtomicLong INVALID = new AtomicLong();
  static final AtomicLong ROWS_OUT = new AtomicLong();
  static volatile long firstNanos;
  static volatile long firstMillis;
  static volatile long firstTicks = -1;
  /** The finest time bucket no window boundary splits: the gcd of the window sizes. */
  static long bucketMs = 60_000;

  private WindowTotals() {}

  /** One counted event: its campaign and counters. The creator is the record key. */
  record Event(String campaignId, long[] counts) {}

  /** Parses a record into its events, each stamped with its own event time. */
  static final class Parse implements FixedKeyProcessor<String, byte[], Event> {
    private FixedKeyProcessorContext<String, Event> context;

    @Override
    public void init(FixedKeyProcessorContext<String, Event> context) {
      this.context = context;
    }

    @Override
    public void process(FixedKeyRecord<String, byte[]> record) {
      if (firstTicks < 0) {
        firstNanos = System.nanoTime();
        firstMillis = System.currentTimeMillis();
        firstTicks = cpuTicks();
      }
      RECORDS.incrementAndGet();
      JsonNode root;
      try {
        root = JSON.readTree(record.value());
      } catch (IOException | RuntimeException e) {
        INVALID.incrementAndGet();
        return;
      }
      // As the worker does (streams/state.py apply_record): a record's events are summed
      // per campaign and time bucket (the gcd of the window sizes: no window boundary
      // splits one) before they reach the windows, so the stores see one update per
      // bucket instead of one per event. A bucket carries its newest event time.
      Map<Bucket, Partial> buckets = new LinkedHashMap<>();
      if (root == null) {
        INVALID.incrementAndGet();
      } else if (root.isArray()) {
        for (JsonNode element : root) {
          add(buckets, element);
        }
      } else {
        add(buckets, root);
      }
      for (Map.Entry<Bucket, Partial> entry : buckets.entrySet()) {
        Partial partial = entry.getValue();
        context.forward(record.withValue(new Event(entry.getKey().campaignId(), partial.counts))
            .withTimestamp(partial.newestTs));
      }
    }

    private static void add(Map<Bucket, Partial> buckets, JsonNode node) {
      JsonNode campaign = node.get("campaign_id");
      JsonNode creator = node.get("creator_id");
      JsonNode eventId = node.get("event_id");
      JsonNode ts = node.get("ts");
      JsonNode kind = node.get("kind");
      // The contract's shape (schemas/events.py): ids are text, ts is epoch ms, kind is
      // "delta" where given (this baseline counts deltas only; the bench sends no other).
      if (campaign == null || !campaign.isTextual() || creator == null || !creator.isTextual()
          || eventId == null || !eventId.isTextual() || ts == null || !ts.canConvertToLong()
          || (kind != null && !"delta".equals(kind.asText()))) {
        INVALID.incrementAndGet();
        return;
      }
      long[] counts = new long[N];
      for (int i = 0; i < N; i++) {
        JsonNode value = node.get(METRICS[i]);
        if (value != null) {
          if (!value.canConvertToLong() || value.asLong() < 0) {
            INVALID.incrementAndGet();
            return;
          }
          counts[i] = value.asLong();
        }
      }
      EVENTS.incrementAndGet();
      long eventTs = ts.asLong();
      Bucket bucket = new Bucket(campaign.asText(), eventTs - Math.floorMod(eventTs, bucketMs));
      Partial partial = buckets.get(bucket);
      if (partial == null) {
        buckets.put(bucket, new Partial(counts, eventTs));
      } else {
        for (int i = 0; i < N; i++) {
          partial.counts[i] += counts[i];
        }
        partial.newestTs = Math.max(partial.newestTs, eventTs);
      }
    }
  }

  /** A campaign's time bucket within one record. */
  record Bucket(String campaignId, long startMs) {}

  /** The sum of a bucket's events so far, and the newest event time among them. */
  static final class Partial {
    final long[] counts;
    long newestTs;

    Partial(long[] counts, long newestTs) {
      this.counts = counts;
      this.newestTs = newestTs;
    }
  }

  /** One window of one creator: totals per campaign (one campaign in the common case). */
  static final class Totals {
    final Map<String, long[]> byCampaign = new HashMap<>(2);

    Totals add(Event event) {
      long[] totals = byCampaign.computeIfAbsent(event.campaignId(), k -> new long[N]);
      long[] counts = event.counts();
      for (int i = 0; i < N; i++) {
        totals[i] += counts[i];
      }
      return this;
    }
  }

  /** Totals as bytes for the window store and its changelog: campaigns, then 11 longs each. */
  static final class TotalsSerde implements Serializer<Totals>, Deserializer<Totals> {
    @Override
    public void configure(Map<String, ?> configs, boolean isKey) {}

    @Override
    public void close() {}

    @Override
    public byte[] serialize(String topic, Totals totals) {
      if (totals == null) {
        return null;
      }
      int size = 4;
      List<byte[]> names = new ArrayList<>(totals.byCampaign.size());
      for (String campaign : totals.byCampaign.keySet()) {
        byte[] name = campaign.getBytes(StandardCharsets.UTF_8);
        names.add(name);
        size += 4 + name.length + 8 * N;
      }
      ByteBuffer out = ByteBuffer.allocate(size).putInt(names.size());
      int i = 0;
      for (long[] counts : totals.byCampaign.values()) {
        byte[] name = names.get(i++);
        out.putInt(name.length).put(name);
        for (long count : counts) {
          out.putLong(count);
        }
      }
      return out.array();
    }

    @Override
    public Totals deserialize(String topic, byte[] data) {
      if (data == null) {
        return null;
      }
      ByteBuffer in = ByteBuffer.wrap(data);
      Totals totals = new Totals();
      for (int n = in.getInt(); n > 0; n--) {
        byte[] name = new byte[in.getInt()];
        in.get(name);
        long[] counts = new long[N];
        for (int i = 0; i < N; i++) {
          counts[i] = in.getLong();
        }
        totals.byCampaign.put(new String(name, StandardCharsets.UTF_8), counts);
      }
      return totals;
    }
  }

  /** The window's rows as the worker's window-rows topic carries them, keyed by campaign. */
  static List<KeyValue<String, byte[]>> rows(Windowed<String> window, Totals totals, int sizeS) {
    List<KeyValue<String, byte[]>> out = new ArrayList<>(totals.byCampaign.size());
    for (Map.Entry<String, long[]> entry : totals.byCampaign.entrySet()) {
      ObjectNode row = JSON.createObjectNode();
      row.put("campaign_id", entry.getKey());
      row.put("creator_id", window.key());
      row.put("window_size_s", sizeS);
      row.put("window_start_ms", window.window().start());
      long[] counts = entry.getValue();
      for (int i = 0; i < N; i++) {
        row.put(METRICS[i], counts[i]);
      }
      try {
        out.add(KeyValue.pair(entry.getKey(), JSON.writeValueAsBytes(row)));
      } catch (IOException e) {
        throw new IllegalStateException(e);
      }
    }
    ROWS_OUT.addAndGet(out.size());
    return out;
  }

  static StreamsBuilder topology(String input, String output, int[] sizesS, long graceS) {
    StreamsBuilder builder = new StreamsBuilder();
    Serde<Totals> totalsSerde = Serdes.serdeFrom(new TotalsSerde(), new TotalsSerde());
    KStream<String, byte[]> records =
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.ByteArray()));
    // processValues keeps the key, so grouping by it needs no repartition topic.
    KGroupedStream<String, Event> byCreator =
        records.processValues(Parse::new).groupByKey(Grouped.keySerde(Serdes.String()));
    for (int sizeS : sizesS) {
      Duration size = Duration.ofSeconds(sizeS);
      Duration grace = Duration.ofSeconds(graceS);
      // In memory with a changelog topic: the worker's state is in memory too, made durable
      // by its own changelog topic (store="memory://" plus streams/changelog.py).
      Materialized<String, Totals, WindowStore<Bytes, byte[]>> store =
          Materialized.<String, Totals>as(
                  Stores.inMemoryWindowStore("totals-" + sizeS, size.plus(grace), size, false))
              .withKeySerde(Serdes.String())
              .withValueSerde(totalsSerde);
      byCreator
          .windowedBy(TimeWindows.ofSizeAndGrace(size, grace))
          .aggregate(Totals::new, (creator, event, totals) -> totals.add(event), store)
          .toStream()
          .flatMap((window, totals) -> rows(window, totals, sizeS))
          .to(output, Produced.with(Serdes.String(), Serdes.ByteArray()));
    }
    return builder;
  }

  static int gcd(int a, int b) {
    return b == 0 ? a : gcd(b, a % b);
  }

  /** User + system CPU ticks of this process, from /proc/self/stat (-1 off Linux). */
  static long cpuTicks() {
    try {
      String stat = Files.readString(Path.of("/proc/self/stat"));
      String[] fields = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
      // After "pid (comm) ": state is field 3, utime field 14, stime field 15.
      return Long.parseLong(fields[11]) + Long.parseLong(fields[12]);
    } catch (IOException | RuntimeException e) {
      return -1;
    }
  }

  static double metric(KafkaStreams streams, String group, String name) {
    double total = 0;
    for (Map.Entry<MetricName, ? extends Metric> entry : streams.metrics().entrySet()) {
      MetricName metricName = entry.getKey();
      if (metricName.group().equals(group) && metricName.name().equals(name)) {
        Object value = entry.getValue().metricValue();
        if (value instanceof Number number && !Double.isNaN(number.doubleValue())) {
          total += number.doubleValue();
        }
      }
    }
    return total;
  }

  static Map<String, String> parseArgs(String[] args) {
    Map<String, String> out = new HashMap<>();
    for (int i = 0; i + 1 < args.length; i += 2) {
      if (!args[i].startsWith("--")) {
        throw new IllegalArgumentException("expected --name value, got " + args[i]);
      }
      out.put(args[i].substring(2), args[i + 1]);
    }
    for (String required : List.of("bootstrap", "input", "output", "app-id", "state-dir")) {
      if (!out.containsKey(required)) {
        throw new IllegalArgumentException("missing --" + required);
      }
    }
    return out;
  }

  public static void main(String[] args) throws Exception {
    Map<String, String> a = parseArgs(args);
    long expect = Long.parseLong(a.getOrDefault("expect", "0"));
    int[] sizes = java.util.Arrays.stream(a.getOrDefault("windows", "60,3600").split(","))
        .mapToInt(Integer::parseInt).toArray();
    long grace = Long.parseLong(a.getOrDefault("grace-s", "600"));
    bucketMs = 1000L * java.util.Arrays.stream(sizes).reduce(WindowTotals::gcd).orElse(1);

    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, a.get("app-id"));
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, a.get("bootstrap"));
    props.put(StreamsConfig.STATE_DIR_CONFIG, a.get("state-dir"));
    // The worker's settings: one thread, at-least-once, a commit (flush) every second.
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 1000);
    props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
    props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
    // The worker fetches up to 8 MiB per partition (batch records are up to 1 MiB).
    props.put(StreamsConfig.consumerPrefix("max.partition.fetch.bytes"), 8 * 1024 * 1024);

    KafkaStreams streams =
        new KafkaStreams(topology(a.get("input"), a.get("output"), sizes, grace).build(), props);
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close(Duration.ofSeconds(30));
      stopped.countDown();
    }));
    streams.setUncaughtExceptionHandler(e -> {
      e.printStackTrace();
      return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
          .StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    streams.start();

    // Done once every expected event was read and a commit finished after that: a commit
    // runs on the stream thread between records, so one that ends later covers them all
    // (caches flushed to the output topic, producer flushed, offsets committed).
    double commitsAtLast = -1;
    while (expect > 0 && stopped.getCount() > 0) {
      if (commitsAtLast < 0 && EVENTS.get() + INVALID.get() >= expect) {
        commitsAtLast = metric(streams, "stream-thread-metrics", "commit-total");
      } else if (commitsAtLast >= 0
          && metric(streams, "stream-thread-metrics", "commit-total") > commitsAtLast) {
        long ticks = cpuTicks();
        double seconds = (System.nanoTime() - firstNanos) / 1e9;
        Map<String, Object> result = new LinkedHashMap<>();
        result.put("events", EVENTS.get());
        result.put("records", RECORDS.get());
        result.put("invalid", INVALID.get());
        result.put("rows_out", ROWS_OUT.get());
        result.put("late_dropped", (long) metric(streams, "stream-task-metrics",
            "dropped-records-total"));
        result.put("seconds", seconds);
        result.put("first_record_unix", firstMillis / 1000.0);
        result.put("cpu_ticks_first", firstTicks);
        result.put("cpu_ticks_done", ticks);
        result.put("kafka_streams", org.apache.kafka.common.utils.AppInfoParser.getVersion());
        System.out.println(JSON.writeValueAsString(result));
        System.out.flush();
        break;
      }
      Thread.sleep(10);
    }
    stopped.await();
  }
}
