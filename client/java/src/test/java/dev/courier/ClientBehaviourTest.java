package dev.courier;

import static dev.courier.TestData.pattern;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.courier.errors.CancelledException;
import dev.courier.errors.NoSuchTransferException;
import dev.courier.errors.NotFoundException;
import dev.courier.errors.TooManyTransfersException;
import dev.courier.errors.UnauthenticatedException;
import dev.courier.errors.UnavailableException;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** What the client does beyond the eight scenarios, against real servers. */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class ClientBehaviourTest {
  @Test
  void subscribe_reconnects_after_a_server_restart() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient bob = server.client("bob");
        CourierClient alice = server.client("alice")) {
      Feed feed = new Feed();
      try (Subscription subscription = bob.subscribe(feed)) {
        feed.ready();
        server.restart();
        // The feed reports the drop, reconnects by itself and is ready again.
        boolean disconnected = false;
        boolean reconnected = false;
        for (int i = 0; i < 50; i++) {
          Feed.Event event = feed.next(15);
          if (event instanceof Feed.Disconnected) {
            disconnected = true;
          } else if (event instanceof Feed.Reconnected) {
            reconnected = true;
          } else if (event instanceof Feed.Ready) {
            break;
          } else {
            throw new AssertionError("unexpected " + event);
          }
        }
        assertTrue(disconnected, "the drop was reported");
        assertTrue(reconnected, "the reconnection was reported");
        SendReceipt sent =
            alice.sendPeerMessage("bob", Message.text("after the restart"), SendOptions.defaults());
        assertEquals(Delivery.DELIVERED, sent.delivery(), "bob is online again");
        assertEquals(sent.messageId(), feed.nextMessage().messageId());
        assertTrue(subscription.isOpen());
      }
      // Closed: bob is offline again.
      waitOffline(alice, "bob");
    }
  }

  private static void waitOffline(CourierClient asker, String user) throws Exception {
    for (int i = 0; i < 100; i++) {
      if (!asker.queryPeersOnlineStatus(List.of(user)).get(user)) {
        return;
      }
      Thread.sleep(50);
    }
    throw new AssertionError(user + " stayed online after the subscription closed");
  }

  @Test
  void a_bad_token_ends_the_subscription() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient forged =
            CourierClient.builder().endpoint(server.url()).token("not-a-token").build()) {
      Feed feed = new Feed();
      Subscription subscription = forged.subscribe(feed);
      Feed.Event event = feed.next(10);
      Feed.Closed closed = assertInstanceOf(Feed.Closed.class, event);
      assertInstanceOf(UnauthenticatedException.class, closed.error());
      assertFalse(subscription.isOpen(), "reconnecting cannot cure a bad token");
    }
  }

  @Test
  void https_urls_speak_tls() throws Exception {
    // The test server speaks plaintext HTTP/2 only: with https:// the client's TLS
    // handshake meets a plaintext answer.
    try (TestServer server = TestServer.start();
        CourierClient tls =
            CourierClient.builder()
                .endpoint(server.url().replace("http://", "https://"))
                .token(server.token("alice"))
                .retries(0)
                .build()) {
      UnavailableException e =
          assertThrows(UnavailableException.class, () -> tls.channelMembers("c"));
      String message = e.getMessage().toLowerCase();
      assertTrue(message.contains("ssl") || message.contains("tls"), "no TLS handshake: " + message);
    }
  }

  @Test
  void unavailable_servers_are_retried_then_reported() throws Exception {
    int port;
    try (ServerSocket socket = new ServerSocket(0)) {
      port = socket.getLocalPort();
    }
    try (CourierClient client =
        CourierClient.builder()
            .endpoint("http://127.0.0.1:" + port)
            .token("t")
            .retries(3)
            .backoff(Duration.ofMillis(100))
            .build()) {
      long start = System.nanoTime();
      assertThrows(UnavailableException.class, () -> client.channelMembers("c"));
      long waited = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
      assertTrue(waited >= 700, "three retries pause 100 + 200 + 400 ms; waited " + waited + " ms");
      // A send carries a client message ID, so it is retried too (the server delivers it
      // once whatever the retries).
      start = System.nanoTime();
      assertThrows(
          UnavailableException.class,
          () -> client.sendPeerMessage("bob", Message.text("hi"), SendOptions.defaults()));
      waited = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
      assertTrue(waited >= 700, "a send is retried like other calls; took " + waited + " ms");
    }
  }

  @Test
  void transfers_can_queue_instead_of_being_refused() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice =
            CourierClient.builder()
                .endpoint(server.url())
                .token(server.token("alice"))
                .maxTransfers(1)
                .queueTransfers(true)
                .build();
        GatedStream source = new GatedStream()) {
      Transfer<Media> held = alice.upload(UploadArgs.builder().stream(source, 10, "held").build());
      Transfer<Media> waiting =
          alice.upload(UploadArgs.builder().bytes(pattern(10, 1), "waiting").build());
      Transfer<Media> cancelled =
          alice.upload(UploadArgs.builder().bytes(pattern(10, 2), "cancelled").build());
      server.waitInFlight(1);
      assertFalse(waiting.isDone(), "the second transfer waits for the slot");
      // A waiting transfer has its request ID and can be cancelled.
      alice.cancel(cancelled.requestId());
      assertThrows(CancelledException.class, cancelled::await);
      assertThrows(NoSuchTransferException.class, () -> alice.cancel(cancelled.requestId()));
      source.feed(pattern(10, 3));
      assertEquals(10, held.await().size());
      assertEquals("waiting", waiting.await().fileName(), "it ran once the slot was free");
    }
  }

  @Test
  void the_default_client_refuses_the_tenth_transfer_and_frees_slots_at_once() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice =
            CourierClient.builder()
                .endpoint(server.url())
                .token(server.token("alice"))
                .maxTransfers(1)
                .build();
        GatedStream source = new GatedStream()) {
      Transfer<Media> held = alice.upload(UploadArgs.builder().stream(source, 10, "held").build());
      assertThrows(
          TooManyTransfersException.class,
          () -> alice.upload(UploadArgs.builder().bytes(pattern(10, 1), "second").build()));
      held.cancel();
      assertThrows(CancelledException.class, held::await);
      // The slot is free the moment await returns.
      assertEquals(
          10, alice.upload(UploadArgs.builder().bytes(pattern(10, 1), "third").build()).await().size());
    }
  }

  @Test
  void cancelling_the_future_cancels_the_transfer() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice = server.client("alice");
        GatedStream source = new GatedStream()) {
      Transfer<Media> upload =
          alice.upload(UploadArgs.builder().stream(source, 1 << 20, "future").build());
      server.waitInFlight(1);
      assertTrue(upload.future().cancel(true));
      assertThrows(CancellationException.class, () -> upload.future().get());
      assertThrows(CancelledException.class, upload::await);
      server.waitInFlight(0);
      server.waitNothingStored();
      assertThrows(NoSuchTransferException.class, () -> alice.cancel(upload.requestId()));
    }
  }

  @Test
  void async_calls_complete_their_futures() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice = server.client("alice")) {
      CompletableFuture<Void> joined = alice.joinChannelAsync("async");
      joined.get(10, TimeUnit.SECONDS);
      assertEquals(List.of("alice"), alice.channelMembersAsync("async").get(10, TimeUnit.SECONDS));
      SendReceipt receipt =
          alice.sendChannelMessageAsync("async", Message.raw(new byte[] {1, 2, 3}, "bytes"))
              .get(10, TimeUnit.SECONDS);
      assertFalse(receipt.messageId().isEmpty());
      ExecutionException e =
          assertThrows(
              ExecutionException.class,
              () ->
                  alice.getMediaAsync("0123456789abcdef0123456789abcdef").get(10, TimeUnit.SECONDS));
      assertInstanceOf(NotFoundException.class, e.getCause());
      assertEquals(
          List.of(false), List.copyOf(alice.queryPeersOnlineStatusAsync(List.of("zed")).get().values()));
    }
  }
}
