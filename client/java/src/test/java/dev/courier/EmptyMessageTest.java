package dev.courier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.courier.errors.InvalidArgumentException;
import dev.courier.errors.UnavailableException;
import io.grpc.Status;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.function.Executable;

/**
 * An empty message (text "" or a raw message without payload) is refused by the client
 * itself, before any call: these tests need no server, their client points at a port
 * where none listens, so a send that got as far as a call would fail with UNAVAILABLE.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class EmptyMessageTest {
  private static final String EMPTY_TEXT = "a text message needs text: an empty one cannot be sent";
  private static final String EMPTY_RAW =
      "a raw message needs a payload: an empty one cannot be sent";

  /** A local port where nothing listens. */
  private static int deadPort() throws Exception {
    try (ServerSocket socket = new ServerSocket(0)) {
      return socket.getLocalPort();
    }
  }

  private static CourierClient clientOfNoServer() throws Exception {
    return CourierClient.builder()
        .endpoint("http://127.0.0.1:" + deadPort())
        .token("t")
        .retries(0)
        .deadline(Duration.ofSeconds(5))
        .build();
  }

  private static void assertRefused(String expected, Executable send) {
    InvalidArgumentException e = assertThrows(InvalidArgumentException.class, send);
    assertEquals(expected, e.getMessage());
    assertEquals(Status.Code.INVALID_ARGUMENT, e.code());
  }

  private static void assertFails(String expected, CompletableFuture<SendReceipt> future) {
    assertTrue(future.isCompletedExceptionally(), "the future failed at once, without a call");
    ExecutionException e = assertThrows(ExecutionException.class, future::get);
    InvalidArgumentException cause = assertInstanceOf(InvalidArgumentException.class, e.getCause());
    assertEquals(expected, cause.getMessage());
  }

  @Test
  void empty_text_and_raw_messages_are_refused_before_any_call() throws Exception {
    try (CourierClient client = clientOfNoServer()) {
      SendOptions options = SendOptions.offlineMessaging();
      Message text = Message.text("");
      Message raw = Message.raw(new byte[0], "nothing");

      assertRefused(EMPTY_TEXT, () -> client.sendPeerMessage("bob", text, options));
      assertRefused(EMPTY_RAW, () -> client.sendPeerMessage("bob", raw, options));
      assertRefused(EMPTY_TEXT, () -> client.sendChannelMessage("c", text));
      assertRefused(EMPTY_RAW, () -> client.sendChannelMessage("c", raw, SendOptions.defaults()));

      assertFails(EMPTY_TEXT, client.sendPeerMessageAsync("bob", text, options));
      assertFails(EMPTY_RAW, client.sendPeerMessageAsync("bob", raw, options));
      assertFails(EMPTY_TEXT, client.sendChannelMessageAsync("c", text));
      assertFails(EMPTY_RAW, client.sendChannelMessageAsync("c", raw, SendOptions.defaults()));

      // A message with content does make the call, and finds no server there.
      assertThrows(
          UnavailableException.class,
          () -> client.sendPeerMessage("bob", Message.text(" "), options));
      assertThrows(
          UnavailableException.class,
          () -> client.sendChannelMessage("c", Message.raw(new byte[] {0}, "")));
    }
  }

  @Test
  void the_interop_client_answers_an_empty_text_with_invalid_argument() throws Exception {
    String server = "http://127.0.0.1:" + deadPort();
    for (String target : List.of("--to", "--channel")) {
      List<String> command = new ArrayList<>();
      command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
      command.addAll(
          List.of(
              "-XX:TieredStopAtLevel=1",
              "-cp",
              System.getProperty("java.class.path"),
              "dev.courier.interop.Main",
              "send",
              target,
              "bob",
              "--text",
              ""));
      ProcessBuilder builder = new ProcessBuilder(command);
      builder.environment().put("COURIER_SERVER", server);
      builder.environment().put("COURIER_TOKEN", "t");
      builder.redirectError(ProcessBuilder.Redirect.DISCARD);
      Process process = builder.start();
      String out = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertTrue(process.waitFor(50, TimeUnit.SECONDS), "the interop client exits");
      String expected =
          "{\"error\":{\"code\":\"INVALID_ARGUMENT\",\"reason\":\"\",\"message\":\""
              + EMPTY_TEXT
              + "\"}}\n";
      assertEquals(expected, out, "send " + target + " bob --text \"\"");
      assertEquals(1, process.exitValue(), "a refused call, not a usage error (2)");
    }
  }
}
