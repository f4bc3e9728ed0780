package dev.courier;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * A real {@code courier-server} process for one test (the Harness of tests/scenarios.md):
 * started from {@code $COURIER_SERVER_BIN} on 127.0.0.1:0 with a fresh data folder and a
 * known JWT secret, its address read from its "listening" log line; killed on close.
 */
final class TestServer implements AutoCloseable {
  /** The secret every test server signs tokens with. */
  static final String SECRET = "test-secret-of-courier-java";

  private static final Pattern ADDR = Pattern.compile("\"addr\"\\s*:\\s*\"([^\"]+)\"");
  private static final Pattern METRICS = Pattern.compile("\"metrics_addr\"\\s*:\\s*\"([^\"]+)\"");
  private static final HttpClient HTTP =
      HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

  private final Path binary;
  private final Path dataDir;
  private final Map<String, String> tokens = new HashMap<>();
  private Process process;
  private String addr;
  private String metricsAddr;

  private TestServer(Path binary, Path dataDir) {
    this.binary = binary;
    this.dataDir = dataDir;
  }

  /** The server binary: $COURIER_SERVER_BIN, or the debug build of the repository. */
  static Path binary() {
    String env = System.getenv("COURIER_SERVER_BIN");
    Path path =
        env != null && !env.isBlank()
            ? Path.of(env)
            : Path.of("../../target/debug/courier-server").toAbsolutePath().normalize();
    assertTrue(
        Files.isExecutable(path),
        path + " is missing: set COURIER_SERVER_BIN or run `cargo build -p courier-server`");
    return path;
  }

  /** Starts a server with extra flags. */
  static TestServer start(String... flags) throws IOException {
    TestServer server = new TestServer(binary(), Files.createTempDirectory("courier-java-test"));
    server.launch("127.0.0.1:0", flags);
    return server;
  }

  private void launch(String listen, String... flags) throws IOException {
    List<String> command = new ArrayList<>();
    command.add(binary.toString());
    command.addAll(
        List.of(
            "serve",
            "--listen",
            listen,
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
            dataDir.toString()));
    command.addAll(List.of(flags));
    ProcessBuilder builder = new ProcessBuilder(command);
    builder.environment().put("COURIER_JWT_SECRET", SECRET);
    builder.environment().put("RUST_LOG", "info");
    builder.redirectErrorStream(true);
    process = builder.start();
    CompletableFuture<String> listening = new CompletableFuture<>();
    Process started = process;
    // The last lines before "listening", to say why a server that exited early did.
    java.util.Deque<String> early = new java.util.ArrayDeque<>();
    // Reports the listening line, then keeps draining so the server never blocks on a
    // full pipe.
    Thread reader =
        new Thread(
            () -> {
              try (BufferedReader lines =
                  new BufferedReader(
                      new InputStreamReader(started.getInputStream(), StandardCharsets.UTF_8))) {
                for (String line = lines.readLine(); line != null; line = lines.readLine()) {
                  if (line.contains("courier-server listening")) {
                    listening.complete(line);
                  } else if (!listening.isDone()) {
                    synchronized (early) {
                      early.addLast(line);
                      if (early.size() > 20) {
                        early.removeFirst();
                      }
                    }
                  }
                  if (!line.contains("courier-server listening")
                      && System.getenv("COURIER_TEST_LOGS") != null) {
                    System.err.println("server: " + line);
                  }
                }
              } catch (IOException e) {
                listening.completeExceptionally(e);
              }
              String last;
              synchronized (early) {
                last = String.join("\n", early);
              }
              listening.completeExceptionally(
                  new IOException("the server exited before listening; its last lines:\n" + last));
            },
            "courier-server-log");
    reader.setDaemon(true);
    reader.start();
    String line;
    try {
      line = listening.get(30, TimeUnit.SECONDS);
    } catch (Exception e) {
      process.destroyForcibly();
      throw new IOException("the server did not report its address within 30 s", e);
    }
    addr = field(ADDR, line);
    metricsAddr = field(METRICS, line);
  }

  private static String field(Pattern pattern, String line) {
    Matcher m = pattern.matcher(line);
    if (!m.find()) {
      fail("no " + pattern + " in " + line);
    }
    return m.group(1);
  }

  /** Kills the process (as a crash would) and starts it again on the same address. */
  void restart() throws IOException, InterruptedException {
    process.destroyForcibly();
    process.waitFor(10, TimeUnit.SECONDS);
    launch(addr);
  }

  String url() {
    return "http://" + addr;
  }

  Path dataDir() {
    return dataDir;
  }

  /** A token for {@code user}, minted by {@code courier-server token} with the secret. */
  synchronized String token(String user) throws IOException, InterruptedException {
    String cached = tokens.get(user);
    if (cached != null) {
      return cached;
    }
    ProcessBuilder builder =
        new ProcessBuilder(binary.toString(), "token", "--user", user, "--ttl", "1h");
    builder.environment().put("COURIER_JWT_SECRET", SECRET);
    builder.redirectError(ProcessBuilder.Redirect.INHERIT);
    Process minting = builder.start();
    String token = new String(minting.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
    assertTrue(minting.waitFor(30, TimeUnit.SECONDS) && minting.exitValue() == 0, "token mints");
    tokens.put(user, token);
    return token;
  }

  /** A client of this server as {@code user}. */
  CourierClient client(String user) throws IOException, InterruptedException {
    return CourierClient.builder().endpoint(url()).token(token(user)).build();
  }

  /** One value from the metrics endpoint. */
  long metric(String name) throws IOException, InterruptedException {
    HttpRequest request =
        HttpRequest.newBuilder(URI.create("http://" + metricsAddr + "/metrics"))
            .timeout(Duration.ofSeconds(5))
            .build();
    String body = HTTP.send(request, HttpResponse.BodyHandlers.ofString()).body();
    for (String line : body.split("\n")) {
      if (line.startsWith(name + " ")) {
        return (long) Double.parseDouble(line.substring(name.length() + 1).trim());
      }
    }
    return fail("metric " + name + " is missing from:\n" + body);
  }

  /**
   * The sum of every series of metric {@code name} (all its label sets), 0 when it has none
   * yet.
   */
  long metricSum(String name) throws IOException, InterruptedException {
    HttpRequest request =
        HttpRequest.newBuilder(URI.create("http://" + metricsAddr + "/metrics"))
            .timeout(Duration.ofSeconds(5))
            .build();
    String body = HTTP.send(request, HttpResponse.BodyHandlers.ofString()).body();
    double sum = 0;
    for (String line : body.split("\n")) {
      if (line.startsWith(name + " ") || line.startsWith(name + "{")) {
        sum += Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1).trim());
      }
    }
    return (long) sum;
  }

  /** Kills the process at once (SIGKILL, as a crash would), keeping its folders. */
  void kill() throws InterruptedException {
    process.destroyForcibly();
    process.waitFor(10, TimeUnit.SECONDS);
  }

  /** Waits (at most 10 s) until the server has {@code n} transfers in flight. */
  void waitInFlight(long n) throws IOException, InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    long now = metric("courier_transfers_in_flight");
    while (now != n && System.nanoTime() < deadline) {
      Thread.sleep(10);
      now = metric("courier_transfers_in_flight");
    }
    if (now != n) {
      fail("transfers in flight stayed " + now + ", expected " + n);
    }
  }

  /** Every file under the local media store, staging files included. */
  List<String> stored() throws IOException {
    Path media = dataDir.resolve("media");
    if (!Files.exists(media)) {
      return List.of();
    }
    try (Stream<Path> files = Files.walk(media)) {
      return files.filter(Files::isRegularFile).map(p -> media.relativize(p).toString()).sorted().toList();
    }
  }

  /** Waits (at most 10 s) until the media store holds no file at all. */
  void waitNothingStored() throws IOException, InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    List<String> now = stored();
    while (!now.isEmpty() && System.nanoTime() < deadline) {
      Thread.sleep(50);
      now = stored();
    }
    if (!now.isEmpty()) {
      fail("the store still holds " + now);
    }
  }

  @Override
  public void close() throws IOException {
    process.destroyForcibly();
    try {
      process.waitFor(10, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    deleteTree(dataDir);
  }

  /** Removes a folder and everything in it (nothing when it is gone already). */
  static void deleteTree(Path dir) throws IOException {
    if (!Files.exists(dir)) {
      return;
    }
    try (Stream<Path> files = Files.walk(dir)) {
      for (Path p : files.sorted(Comparator.reverseOrder()).toList()) {
        Files.deleteIfExists(p);
      }
    }
  }
}
