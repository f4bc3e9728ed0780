package dev.courier;

import static dev.courier.TestData.pattern;
import static dev.courier.TestData.sha256;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Scenario 15 of tests/scenarios.md, {@code three_replicas}: one client over three
 * courier-server replicas sharing a nats-server (JetStream) and one media folder, through
 * {@link CourierClient.Builder#endpoints(String...)}.
 */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class ReplicasTest {
  private static final String REQUESTS = "courier_grpc_requests_total";

  @TempDir Path dir;

  @Test
  void three_replicas() throws Exception {
    try (NatsServer nats = NatsServer.start()) {
      Path media = Files.createDirectories(dir.resolve("media"));
      String[] flags = {"--bus", nats.url(), "--storage", media.toString()};
      List<TestServer> replicas = new ArrayList<>();
      try {
        for (int i = 0; i < 3; i++) {
          replicas.add(TestServer.start(flags));
        }
        run(replicas);
      } finally {
        for (TestServer replica : replicas) {
          replica.close();
        }
      }
    }
  }

  @Test
  void a_replica_that_is_down_is_skipped() throws Exception {
    int closed;
    try (java.net.ServerSocket socket = new java.net.ServerSocket(0)) {
      closed = socket.getLocalPort();
    }
    try (TestServer server = TestServer.start();
        CourierClient alice =
            CourierClient.builder()
                .endpoints("http://127.0.0.1:" + closed, server.url())
                .token(server.token("alice"))
                .retries(0)
                .build()) {
      // Without retries, no call may be sent to the address that refuses connections.
      for (int i = 0; i < 10; i++) {
        assertEquals(
            java.util.Map.of("bob", false), alice.queryPeersOnlineStatus(List.of("bob")));
      }
      Media media = alice.upload(UploadArgs.builder().bytes(pattern(1024, 3), "a.bin").build()).await();
      assertEquals(media.sha256(), sha256(alice.downloadToMemory(media.mediaId()).await().bytes()));
    }
  }

  private static CourierClient client(List<TestServer> replicas, String user) throws Exception {
    return CourierClient.builder()
        .endpoints(replicas.stream().map(TestServer::url).toList())
        .token(replicas.get(0).token(user))
        .build();
  }

  private void run(List<TestServer> replicas) throws Exception {
    try (CourierClient alice = client(replicas, "alice");
        CourierClient bob = client(replicas, "bob")) {
      // Calls spread: 30 unary calls reach every replica.
      byte[] data = pattern(300 * 1024, 15);
      Media uploaded = alice.upload(UploadArgs.builder().bytes(data, "spread.bin").build()).await();
      long[] before = new long[3];
      for (int i = 0; i < 3; i++) {
        before[i] = replicas.get(i).metricSum(REQUESTS);
      }
      for (int i = 0; i < 30; i++) {
        assertEquals(uploaded.mediaId(), alice.getMedia(uploaded.mediaId()).mediaId());
      }
      for (int i = 0; i < 3; i++) {
        long after = replicas.get(i).metricSum(REQUESTS);
        assertTrue(after > before[i], "replica " + i + " served none of the 30 calls");
      }

      // bob's feed, on one of them; 5 messages, then that replica dies.
      Feed feed = new Feed();
      List<ReceivedMessage> got = new ArrayList<>();
      List<String> sent = new ArrayList<>();
      try (Subscription subscription = bob.subscribe(feed)) {
        feed.ready();
        for (int i = 1; i <= 5; i++) {
          sent.add(
              alice
                  .sendPeerMessage("bob", Message.text("m" + i), SendOptions.offlineMessaging())
                  .messageId());
        }
        while (got.size() < 5) {
          got.add(feed.nextMessage());
        }
        int holder = holderOfTheStream(replicas);
        replicas.get(holder).kill();

        // alice's sends are retried on another replica where one fails with UNAVAILABLE;
        // with offline messaging, one sent while bob is between replicas is kept for him.
        for (int i = 6; i <= 10; i++) {
          sent.add(
              alice
                  .sendPeerMessage("bob", Message.text("m" + i), SendOptions.offlineMessaging())
                  .messageId());
        }
        boolean disconnected = false;
        boolean reconnected = false;
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (got.size() < 10) {
          assertTrue(System.nanoTime() < deadline, "bob got " + got.size() + " of 10 within 60 s");
          Feed.Event event = feed.next(30);
          if (event instanceof Feed.Message m) {
            got.add(m.message());
          } else if (event instanceof Feed.Disconnected) {
            disconnected = true;
          } else if (event instanceof Feed.Reconnected) {
            reconnected = true;
          } else if (event instanceof Feed.Closed c) {
            fail("the feed ended", c.error());
          }
        }
        // The replayed messages come before the new stream's ready event, which is when
        // the library says it reconnected.
        while (!reconnected) {
          Feed.Event event = feed.next(30);
          if (event instanceof Feed.Message m) {
            fail("a message beyond the 10: " + m.message());
          } else if (event instanceof Feed.Disconnected) {
            disconnected = true;
          } else if (event instanceof Feed.Closed c) {
            fail("the feed ended", c.error());
          }
          reconnected = event instanceof Feed.Reconnected;
        }
        assertTrue(disconnected, "the library told bob the feed dropped");
        assertTrue(subscription.isOpen());
        // Nothing more: not one repeated.
        alice.sendPeerMessage("bob", Message.text("marker"), SendOptions.offlineMessaging());
        TextMessage next = assertInstanceOf(TextMessage.class, feed.nextMessage().message());
        assertEquals("marker", next.text(), "no message came twice");
      }
      List<String> ids = got.stream().map(ReceivedMessage::messageId).toList();
      assertEquals(sent, ids, "all 10, each once, in order");
      for (int i = 0; i < 10; i++) {
        assertEquals(Message.text("m" + (i + 1)), got.get(i).message());
        if (i > 0) {
          assertTrue(got.get(i).cursor() > got.get(i - 1).cursor(), "cursors increase");
        }
      }

      // Transfers still work through the client after the kill.
      byte[] more = pattern(700 * 1024, 16);
      Media after = alice.upload(UploadArgs.builder().bytes(more, "after.bin").build()).await();
      Downloaded down = bob.downloadToMemory(after.mediaId()).await();
      assertEquals(sha256(more), sha256(down.bytes()));
      Path file = dir.resolve("spread.bin");
      bob.downloadToFile(uploaded.mediaId(), file).await();
      assertEquals(sha256(data), sha256(Files.readAllBytes(file)));
      assertFalse(Files.exists(CourierClient.partialPath(file, uploaded.mediaId())));
    }
  }

  /** The replica that holds bob's stream: the one with a subscriber (10 s at most). */
  private static int holderOfTheStream(List<TestServer> replicas) throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (System.nanoTime() < deadline) {
      for (int i = 0; i < replicas.size(); i++) {
        if (replicas.get(i).metricSum("courier_subscribers") > 0) {
          return i;
        }
      }
      Thread.sleep(50);
    }
    return fail("no replica reports bob's subscription (courier_subscribers)");
  }
}
