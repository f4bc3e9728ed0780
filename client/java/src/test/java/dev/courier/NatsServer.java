package dev.courier;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.File;
import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;

/**
 * A real {@code nats-server} with JetStream on 127.0.0.1 for the replica scenario, on a
 * free port with its own store folder; killed on close. The binary is {@code
 * $COURIER_NATS_SERVER} (client/java/run-tests sets it) or {@code nats-server} on the PATH.
 * Without one the test is skipped, unless {@code COURIER_TEST_REQUIRE_NATS=1}, where it
 * fails.
 */
final class NatsServer implements AutoCloseable {
  private static final HttpClient HTTP =
      HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();

  private final Process process;
  private final Path store;
  private final int port;

  private NatsServer(Process process, Path store, int port) {
    this.process = process;
    this.store = store;
    this.port = port;
  }

  /** The binary, or a skip (a failure when a nats-server is required). */
  static Path binary() {
    String env = System.getenv("COURIER_NATS_SERVER");
    if (env != null && !env.isBlank() && Files.isExecutable(Path.of(env))) {
      return Path.of(env);
    }
    String path = System.getenv("PATH");
    for (String dir : (path == null ? "" : path).split(File.pathSeparator)) {
      Path candidate = Path.of(dir.isEmpty() ? "." : dir, "nats-server");
      if (Files.isExecutable(candidate)) {
        return candidate;
      }
    }
    String why =
        "no nats-server: set COURIER_NATS_SERVER or put nats-server on the PATH"
            + " (client/java/run-tests builds one)";
    if ("1".equals(System.getenv("COURIER_TEST_REQUIRE_NATS"))) {
      return fail("COURIER_TEST_REQUIRE_NATS=1 but " + why);
    }
    return Assumptions.abort("skipped: " + why);
  }

  /** Starts one with JetStream and waits (20 s) until JetStream answers its health check. */
  static NatsServer start() throws IOException, InterruptedException {
    Path binary = binary();
    Path store = Files.createTempDirectory("courier-java-nats");
    int port = freePort();
    int monitor = freePort();
    ProcessBuilder builder =
        new ProcessBuilder(
            List.of(
                binary.toString(),
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                Integer.toString(port),
                "-m",
                Integer.toString(monitor),
                "-sd",
                store.toString()));
    builder.redirectErrorStream(true);
    builder.redirectOutput(
        System.getenv("COURIER_TEST_LOGS") != null
            ? ProcessBuilder.Redirect.INHERIT
            : ProcessBuilder.Redirect.DISCARD);
    NatsServer nats = new NatsServer(builder.start(), store, port);
    URI health = URI.create("http://127.0.0.1:" + monitor + "/healthz?js-enabled-only=true");
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
    while (System.nanoTime() < deadline) {
      try {
        HttpRequest request = HttpRequest.newBuilder(health).timeout(Duration.ofSeconds(2)).build();
        if (HTTP.send(request, HttpResponse.BodyHandlers.discarding()).statusCode() == 200) {
          return nats;
        }
      } catch (IOException notYet) {
        // Not listening yet.
      }
      if (!nats.process.isAlive()) {
        break;
      }
      Thread.sleep(50);
    }
    nats.close();
    return fail("nats-server did not become healthy within 20 s");
  }

  private static int freePort() throws IOException {
    try (ServerSocket socket = new ServerSocket(0)) {
      return socket.getLocalPort();
    }
  }

  /** {@code nats://127.0.0.1:<port>}, for {@code courier-server --bus}. */
  String url() {
    return "nats://127.0.0.1:" + port;
  }

  @Override
  public void close() throws IOException {
    process.destroyForcibly();
    try {
      process.waitFor(10, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    TestServer.deleteTree(store);
  }
}
