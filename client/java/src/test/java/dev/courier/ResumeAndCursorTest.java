package dev.courier;

import static dev.courier.TestData.pattern;
import static dev.courier.TestData.sha256;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.courier.errors.CancelledException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Resumable uploads (issue 15) and cursors and idempotent sends (issue 18): scenarios 10 to
 * 12 of tests/scenarios.md, against a real server, and the pieces that need none.
 */
@Timeout(120)
class ResumeAndCursorTest {
  private static final int PART = 256 * 1024;

  @TempDir Path dir;

  private static Path state(Path path) {
    return path.resolveSibling(path.getFileName() + ".courier-upload");
  }

  @Test
  void crc32c_state_files_and_client_message_ids() {
    byte[] check = "123456789".getBytes(StandardCharsets.US_ASCII);
    assertEquals(0xE3069283, ResumableUploads.crc32c(check, check.length), "RFC 3720's check value");
    Map<String, String> parsed =
        ResumableUploads.parseFlatJson(
            "{\"upload_id\": " + ResumableUploads.quote("a\"b\\c") + ", \"size\": 42}");
    assertEquals("a\"b\\c", parsed.get("upload_id"));
    assertEquals("42", parsed.get("size"));
    String generated = SendOptions.defaults().idForSend();
    assertTrue(generated.matches("[0-9a-f]{32}"), generated);
    assertNotEquals(generated, SendOptions.defaults().idForSend());
    assertEquals("mine", SendOptions.defaults().withClientMessageId("mine").idForSend());
  }

  @Test
  void a_resumable_upload_pauses_and_resumes_across_a_server_restart() throws Exception {
    byte[] data = pattern(2 * PART + 1000, 15);
    Path path = dir.resolve("big.bin");
    Files.write(path, data);
    try (TestServer server = TestServer.start("--upload-part-size", Integer.toString(PART))) {
      ResumedUpload paused;
      try (CourierClient alice = server.client("alice")) {
        paused = alice.uploadResumable(UploadArgs.file(path), 1).await();
      }
      assertNull(paused.media());
      assertEquals(0, paused.resumedFrom());
      assertEquals(PART, paused.committedSize());
      Map<String, String> saved =
          ResumableUploads.parseFlatJson(Files.readString(state(path), StandardCharsets.UTF_8));
      assertEquals(paused.uploadId(), saved.get("upload_id"));
      assertEquals(server.url(), saved.get("server"));
      assertEquals(Integer.toString(data.length), saved.get("size"));
      assertEquals(sha256(data), saved.get("sha256"));
      assertEquals(Integer.toString(PART), saved.get("part_size"));

      server.restart();
      List<Long> seen = new ArrayList<>();
      try (CourierClient alice = server.client("alice")) {
        Transfer<ResumedUpload> transfer =
            alice.uploadResumable(
                UploadArgs.builder()
                    .file(path)
                    .kind(MediaKind.FILE)
                    .progressListener((id, progress) -> seen.add(progress.done()))
                    .build());
        ResumedUpload done = transfer.await();
        assertNotNull(done.media());
        assertEquals(paused.uploadId(), done.uploadId());
        assertEquals(PART, done.resumedFrom());
        assertEquals(data.length, done.media().size());
        assertEquals(sha256(data), done.media().sha256());
        assertFalse(Files.exists(state(path)), "the state file is removed after the commit");
        // The transfer reports 0 as it starts, then the bytes the server already holds.
        assertEquals(PART, seen.stream().filter(d -> d > 0).findFirst().orElseThrow());
        assertEquals(data.length, seen.get(seen.size() - 1));
        assertArrayEquals(data, alice.downloadToMemory(done.media().mediaId()).await().bytes());
      }
    }
  }

  @Test
  void a_stale_state_file_starts_over_and_a_cancel_leaves_none() throws Exception {
    byte[] data = pattern(3 * PART, 16);
    Path path = dir.resolve("again.bin");
    Files.write(path, data);
    try (TestServer server = TestServer.start("--upload-part-size", Integer.toString(PART));
        CourierClient alice = server.client("alice")) {
      ResumedUpload paused = alice.uploadResumable(UploadArgs.file(path), 1).await();
      String text = Files.readString(state(path), StandardCharsets.UTF_8);
      Files.writeString(state(path), text.replace(paused.uploadId(), "0".repeat(32)));
      ResumedUpload done = alice.uploadResumable(UploadArgs.file(path)).await();
      assertEquals(0, done.resumedFrom());
      assertNotEquals(paused.uploadId(), done.uploadId());
      assertEquals(sha256(data), done.media().sha256());

      AtomicReference<Transfer<ResumedUpload>> holder = new AtomicReference<>();
      holder.set(
          alice.uploadResumable(
              UploadArgs.builder()
                  .file(path)
                  .kind(MediaKind.FILE)
                  .progressListener(
                      (id, progress) -> {
                        Transfer<ResumedUpload> running = holder.get();
                        if (progress.done() >= PART && running != null) {
                          running.cancel();
                        }
                      })
                  .build()));
      assertThrows(CancelledException.class, () -> holder.get().await());
      assertFalse(Files.exists(state(path)), "a cancel removes the state file");
    }
  }

  /** A listener that queues messages and ready events with their cursors. */
  private static final class Cursors implements SubscriptionListener {
    record Ready(long cursor, boolean eventsLost) {}

    final BlockingQueue<Object> events = new LinkedBlockingQueue<>();

    @Override
    public void onMessage(ReceivedMessage message) {
      events.add(message);
    }

    @Override
    public void onReady(int offlineCount, long cursor, boolean eventsLost) {
      events.add(new Ready(cursor, eventsLost));
    }

    Object next() throws InterruptedException {
      Object event = events.poll(10, TimeUnit.SECONDS);
      assertNotNull(event, "an event within 10 s");
      return event;
    }

    ReceivedMessage message() throws InterruptedException {
      for (int i = 0; i < 100; i++) {
        if (next() instanceof ReceivedMessage m) {
          return m;
        }
      }
      throw new AssertionError("no message among 100 events");
    }

    Ready ready(List<ReceivedMessage> before) throws InterruptedException {
      for (int i = 0; i < 100; i++) {
        Object event = next();
        if (event instanceof Ready r) {
          return r;
        }
        before.add((ReceivedMessage) event);
      }
      throw new AssertionError("no ready event among 100 events");
    }
  }

  @Test
  void subscribing_after_a_cursor_brings_what_was_missed() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice = server.client("alice");
        CourierClient bob = server.client("bob")) {
      alice.joinChannel("team");
      bob.joinChannel("team");
      Cursors first = new Cursors();
      ReceivedMessage one;
      ReceivedMessage two;
      try (Subscription subscription = bob.subscribe(first)) {
        assertFalse(first.ready(new ArrayList<>()).eventsLost());
        alice.sendPeerMessage("bob", Message.text("one"), SendOptions.defaults());
        alice.sendChannelMessage("team", Message.text("two"));
        one = first.message();
        two = first.message();
        assertEquals(Message.text("one"), one.message());
        assertEquals(Message.text("two"), two.message());
        assertTrue(0 < one.cursor() && one.cursor() < two.cursor());
        assertEquals(two.cursor(), subscription.cursor());
      }
      for (int i = 0;
          i < 200 && alice.queryPeersOnlineStatus(List.of("bob")).getOrDefault("bob", false);
          i++) {
        Thread.sleep(50);
      }
      alice.sendPeerMessage("bob", Message.text("three"), SendOptions.offlineMessaging());
      alice.sendChannelMessage("team", Message.text("four"));
      Cursors back = new Cursors();
      try (Subscription subscription = bob.subscribe(back, two.cursor())) {
        List<ReceivedMessage> before = new ArrayList<>();
        Cursors.Ready ready = back.ready(before);
        assertEquals(2, before.size(), before.toString());
        assertEquals(Message.text("three"), before.get(0).message());
        assertEquals(Message.text("four"), before.get(1).message());
        assertTrue(two.cursor() < before.get(0).cursor());
        assertTrue(before.get(0).cursor() < before.get(1).cursor());
        assertFalse(ready.eventsLost());
        assertTrue(ready.cursor() >= before.get(1).cursor());
      }
    }
  }

  @Test
  void a_reconnecting_feed_resumes_after_its_last_cursor() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice = server.client("alice");
        // bob's feed waits 2 s before reconnecting, so that alice's message is sent while
        // bob is away: only a reconnection after the last cursor gets it, nothing twice.
        CourierClient bob =
            CourierClient.builder()
                .endpoint(server.url())
                .token(server.token("bob"))
                .backoff(java.time.Duration.ofSeconds(2))
                .build()) {
      alice.joinChannel("team");
      bob.joinChannel("team");
      BlockingQueue<Object> events = new LinkedBlockingQueue<>();
      SubscriptionListener listener =
          new SubscriptionListener() {
            @Override
            public void onMessage(ReceivedMessage message) {
              events.add(message);
            }

            @Override
            public void onReady(int offlineCount, long cursor, boolean eventsLost) {
              events.add("ready");
            }

            @Override
            public void onDisconnected(String reason) {
              events.add("disconnected");
            }
          };
      try (Subscription subscription = bob.subscribe(listener)) {
        assertEquals("ready", events.poll(10, TimeUnit.SECONDS));
        alice.sendChannelMessage("team", Message.text("before the break"));
        ReceivedMessage one = (ReceivedMessage) events.poll(10, TimeUnit.SECONDS);
        assertNotNull(one);
        server.restart();
        assertEquals("disconnected", events.poll(10, TimeUnit.SECONDS));
        // Memberships do not outlive the server process: both join again.
        alice.joinChannel("team");
        bob.joinChannel("team");
        SendReceipt sent = alice.sendChannelMessage("team", Message.text("during the break"));
        Object replayed = events.poll(20, TimeUnit.SECONDS);
        ReceivedMessage message = assertInstanceOf(ReceivedMessage.class, replayed);
        assertEquals(sent.messageId(), message.messageId());
        assertTrue(message.cursor() > one.cursor());
        assertEquals("ready", events.poll(10, TimeUnit.SECONDS));
        Object extra = events.poll(500, TimeUnit.MILLISECONDS);
        assertFalse(extra instanceof ReceivedMessage, "delivered again: " + extra);
      }
    }
  }

  @Test
  void a_repeated_client_message_id_delivers_once() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice = server.client("alice");
        CourierClient bob = server.client("bob")) {
      alice.joinChannel("room");
      bob.joinChannel("room");
      Cursors feed = new Cursors();
      try (Subscription subscription = bob.subscribe(feed)) {
        feed.ready(new ArrayList<>());
        SendOptions once = SendOptions.defaults().withClientMessageId("java-once-1");
        SendReceipt first = alice.sendPeerMessage("bob", Message.text("once"), once);
        SendReceipt again = alice.sendPeerMessage("bob", Message.text("once"), once);
        assertEquals(first.messageId(), again.messageId());
        assertEquals(first.delivery(), again.delivery());
        SendOptions channelOnce = SendOptions.defaults().withClientMessageId("java-once-2");
        SendReceipt channel = alice.sendChannelMessage("room", Message.text("once"), channelOnce);
        assertEquals(
            channel.messageId(),
            alice.sendChannelMessage("room", Message.text("once"), channelOnce).messageId());
        SendReceipt a = alice.sendPeerMessage("bob", Message.text("same"), SendOptions.defaults());
        SendReceipt b = alice.sendPeerMessage("bob", Message.text("same"), SendOptions.defaults());
        assertNotEquals(a.messageId(), b.messageId());
        for (String id : List.of(first.messageId(), channel.messageId(), a.messageId(), b.messageId())) {
          assertEquals(id, feed.message().messageId());
        }
        Object extra = feed.events.poll(500, TimeUnit.MILLISECONDS);
        assertFalse(extra instanceof ReceivedMessage, "delivered again: " + extra);
      }
    }
  }

  @Test
  void a_resumable_upload_needs_a_file() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice = server.client("alice")) {
      assertInstanceOf(
          dev.courier.errors.InvalidArgumentException.class,
          assertThrows(
              dev.courier.errors.CourierException.class,
              () -> alice.uploadResumable(UploadArgs.builder().bytes(new byte[] {1}, "x").build())));
    }
  }
}
