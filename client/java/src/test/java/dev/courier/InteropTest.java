package dev.courier;

import static dev.courier.TestData.pattern;
import static dev.courier.TestData.png;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The interop client's {@code delete} and {@code url} commands of docs/interop.md, run as a
 * process (dev.courier.interop.Main on this test's class path) against a real server: its
 * JSON lines on stdout and its exit status.
 */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class InteropTest {
  @TempDir Path dir;

  /** What one run printed on stdout, and its exit status. */
  record Run(int status, String stdout) {
    String line() {
      return stdout.lines().findFirst().orElse("");
    }
  }

  private static Run interop(TestServer server, String user, String... args) throws Exception {
    List<String> command = new ArrayList<>();
    command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    command.addAll(
        List.of(
            "-XX:TieredStopAtLevel=1",
            "-cp",
            System.getProperty("java.class.path"),
            "dev.courier.interop.Main"));
    command.addAll(List.of(args));
    ProcessBuilder builder = new ProcessBuilder(command);
    builder.environment().put("COURIER_SERVER", server.url());
    builder.environment().put("COURIER_TOKEN", server.token(user));
    builder.redirectError(ProcessBuilder.Redirect.DISCARD);
    Process process = builder.start();
    String out = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(process.waitFor(60, TimeUnit.SECONDS), "the interop client exits");
    return new Run(process.exitValue(), out);
  }

  private static String error(String code, String reason) {
    return "\"error\":{\"code\":\"" + code + "\",\"reason\":\"" + reason + "\"";
  }

  @Test
  void delete_prints_the_deletion_and_later_calls_say_media_deleted() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice = server.client("alice")) {
      Media media =
          alice
              .upload(UploadArgs.builder().bytes(png(40, 30), "cat.png").kind(MediaKind.IMAGE).build())
              .await();
      String id = media.mediaId();
      String deleted = "{\"media_id\":\"" + id + "\",\"deleted\":true}";
      Run first = interop(server, "alice", "delete", id);
      assertEquals(new Run(0, deleted + "\n"), first);
      assertEquals(new Run(0, deleted + "\n"), interop(server, "alice", "delete", id), "again");

      Path out = dir.resolve("cat.png");
      Run download = interop(server, "bob", "download", id, "-o", out.toString());
      assertEquals(1, download.status());
      assertTrue(download.line().contains(error("NOT_FOUND", "MEDIA_DELETED")), download.stdout());
      assertTrue(Files.notExists(out));
      Run send = interop(server, "alice", "send", "--to", "bob", "--media-id", id, "--offline");
      assertEquals(1, send.status());
      assertTrue(send.line().contains(error("NOT_FOUND", "MEDIA_DELETED")), send.stdout());

      Run unknown = interop(server, "alice", "delete", "00112233445566778899aabbccddeeff");
      assertEquals(1, unknown.status());
      assertTrue(unknown.line().contains(error("NOT_FOUND", "")), unknown.stdout());
      assertEquals(2, interop(server, "alice", "delete").status(), "a usage error");
    }
  }

  @Test
  void url_prints_a_link_and_its_expiry() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice = server.client("alice")) {
      byte[] data = pattern(300 * 1024, 29);
      Media file = alice.upload(UploadArgs.builder().bytes(data, "data.bin").build()).await();
      Run run = interop(server, "bob", "url", file.mediaId(), "--ttl", "60s");
      assertEquals(0, run.status(), run.stdout());
      Matcher line =
          Pattern.compile("\\{\"url\":\"([^\"]+)\",\"expire_time\":\"([^\"]+)\"}").matcher(run.line());
      assertTrue(line.matches(), run.line());
      String url = line.group(1);
      assertTrue(url.startsWith(server.url() + "/media/v1/" + file.mediaId() + "?"), url);
      // RFC 3339, UTC, whole seconds, about a minute away.
      String expires = line.group(2);
      assertTrue(expires.matches("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ"), expires);
      Duration left = Duration.between(Instant.now(), Instant.parse(expires));
      assertTrue(left.compareTo(Duration.ofSeconds(50)) > 0 && left.compareTo(Duration.ofSeconds(61)) <= 0, left.toString());
      HttpResponse<byte[]> fetched =
          HttpClient.newHttpClient()
              .send(HttpRequest.newBuilder(URI.create(url)).build(), HttpResponse.BodyHandlers.ofByteArray());
      assertEquals(200, fetched.statusCode());
      assertTrue(java.util.Arrays.equals(data, fetched.body()), "byte-identical");

      Run refused = interop(server, "bob", "url", file.mediaId(), "--max-edge", "90");
      assertEquals(1, refused.status());
      assertTrue(refused.line().contains(error("FAILED_PRECONDITION", "NOT_AN_IMAGE")), refused.stdout());
      assertEquals(2, interop(server, "bob", "url", file.mediaId(), "--max-edge", "big").status());
      assertEquals(2, interop(server, "bob", "url", file.mediaId(), "--ttl", "soon").status());
    }
  }
}
