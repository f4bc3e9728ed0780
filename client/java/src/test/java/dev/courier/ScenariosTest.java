package dev.courier;

import static dev.courier.TestData.MIB;
import static dev.courier.TestData.pattern;
import static dev.courier.TestData.png;
import static dev.courier.TestData.sha256;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import courier.v1.ErrorReasonOuterClass.ErrorReason;
import dev.courier.errors.CancelledException;
import dev.courier.errors.IntegrityException;
import dev.courier.errors.InvalidArgumentException;
import dev.courier.errors.MediaTooLargeException;
import dev.courier.errors.MediaUnavailableException;
import dev.courier.errors.MessageTooLargeException;
import dev.courier.errors.NoSuchTransferException;
import dev.courier.errors.NotFoundException;
import dev.courier.errors.PeerUnreachableException;
import dev.courier.errors.RateLimitedException;
import dev.courier.errors.TooManyTransfersException;
import dev.courier.errors.UnauthenticatedException;
import io.grpc.Status;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The eight client scenarios of tests/scenarios.md, under the same names, through the
 * Java client against a real courier-server process each.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class ScenariosTest {
  @TempDir Path dir;

  @Test
  void upload_with_progress() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice = server.client("alice")) {
      byte[] data = pattern(5 * MIB, 1);
      Path path = dir.resolve("report.bin");
      Files.write(path, data);
      List<Progress> seen = new CopyOnWriteArrayList<>();
      CountDownLatch returned = new CountDownLatch(1);
      UploadArgs args =
          UploadArgs.builder()
              .file(path)
              .progressListener(
                  (id, p) -> {
                    seen.add(p);
                    // Holds the first data progress until the test has looked at the call's
                    // return: the upload cannot finish before it.
                    if (p.done() > 0) {
                      await(returned);
                    }
                  })
              .build();
      Transfer<Media> upload = alice.upload(args);
      // The call returned a request ID at once, before the upload completed.
      assertTrue(upload.requestId() > 0);
      assertFalse(upload.isDone(), "the upload is still running when the call returns");
      returned.countDown();
      Media media = upload.await();

      long total = 5L * MIB;
      for (int i = 1; i < seen.size(); i++) {
        assertTrue(seen.get(i - 1).done() <= seen.get(i).done(), "progress went backwards: " + seen);
      }
      assertTrue(seen.stream().allMatch(p -> p.total() == total), "every total is 5 MiB: " + seen);
      assertEquals(total, seen.get(seen.size() - 1).done());
      assertEquals(total, media.size());
      assertEquals("report.bin", media.fileName());
      assertEquals(MediaKind.FILE, media.kind());
      assertEquals(sha256(data), media.sha256());
    }
  }

  @Test
  void cancel_mid_upload() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice = server.client("alice");
        GatedStream source = new GatedStream()) {
      Transfer<Media> upload =
          alice.upload(UploadArgs.builder().stream(source, 20L * MIB, "big.bin").build());
      long id = upload.requestId();
      assertEquals(0, upload.progress().done(), "the call returns before any byte moves");
      for (int chunk = 0; chunk < 8; chunk++) {
        source.feed(pattern(256 * 1024, chunk));
      }
      waitUntil(() -> upload.progress().done() >= 2L * MIB, "progress passes 2 MiB");
      server.waitInFlight(1);

      alice.cancel(id);
      CancelledException cancelled = assertThrows(CancelledException.class, upload::await);
      assertEquals(Status.Code.CANCELLED, cancelled.code());
      // Nothing stored, and the slot is free at once.
      server.waitInFlight(0);
      server.waitNothingStored();
      NoSuchTransferException again =
          assertThrows(NoSuchTransferException.class, () -> alice.cancel(id));
      assertEquals(id, again.requestId());
      Media next =
          alice.upload(UploadArgs.builder().bytes(pattern(1000, 2), "next.bin").build()).await();
      assertEquals(1000, next.size());
    }
  }

  @Test
  void download_to_file() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice = server.client("alice")) {
      byte[] data = pattern(3 * MIB, 3);
      Media media = alice.upload(UploadArgs.builder().bytes(data, "doc.bin").build()).await();
      Path path = dir.resolve("doc.bin");
      Media got = alice.downloadToFile(media.mediaId(), path).await();
      assertEquals(media, got);
      assertArrayEquals(data, Files.readAllBytes(path));
      assertEquals(List.of("doc.bin"), list(dir), "no partial file remains");

      // Cancelled part-way: neither the file nor a partial file is left.
      byte[] big = pattern(30 * MIB, 4);
      Media bigMedia = alice.upload(UploadArgs.builder().bytes(big, "big.bin").build()).await();
      Path target = dir.resolve("big.bin");
      Path partial = CourierClient.partialPath(target, bigMedia.mediaId());
      assertEquals("." + "big.bin." + bigMedia.mediaId() + ".part", partial.getFileName().toString());
      CountDownLatch moving = new CountDownLatch(1);
      CountDownLatch cancelled = new CountDownLatch(1);
      Transfer<Media> download =
          alice.downloadToFile(
              bigMedia.mediaId(),
              target,
              (id, p) -> {
                if (p.done() > 0) {
                  moving.countDown();
                  await(cancelled);
                }
              });
      assertTrue(moving.await(10, TimeUnit.SECONDS), "the download moves bytes");
      assertTrue(Files.exists(partial), "bytes go to the partial file first");
      download.cancel();
      cancelled.countDown();
      assertThrows(CancelledException.class, download::await);
      assertFalse(Files.exists(target));
      assertFalse(Files.exists(partial));

      // Interrupted earlier: the first MiB is already in the partial file; only the rest
      // is fetched.
      Files.write(partial, java.util.Arrays.copyOf(big, MIB));
      server.waitInFlight(0);
      long sentBefore = server.metric("courier_download_bytes_total");
      alice.downloadToFile(bigMedia.mediaId(), target).await();
      long sent = server.metric("courier_download_bytes_total") - sentBefore;
      assertEquals(30L * MIB - MIB, sent, "only the missing bytes were sent");
      assertArrayEquals(big, Files.readAllBytes(target));
      assertFalse(Files.exists(partial));

      // A partial file with wrong bytes fails the check, is removed, and the next try works.
      Files.delete(target);
      Files.write(partial, new byte[MIB]);
      IntegrityException integrity =
          assertThrows(
              IntegrityException.class,
              () -> alice.downloadToFile(bigMedia.mediaId(), target).await());
      assertEquals(Status.Code.DATA_LOSS, integrity.code());
      assertFalse(Files.exists(partial));
      assertFalse(Files.exists(target));
      alice.downloadToFile(bigMedia.mediaId(), target).await();
      assertArrayEquals(big, Files.readAllBytes(target));
    }
  }

  @Test
  void download_to_memory() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice = server.client("alice")) {
      byte[] data = pattern(200 * 1024, 5);
      Media media = alice.upload(UploadArgs.builder().bytes(data, "notes.bin").build()).await();
      List<Progress> seen = new CopyOnWriteArrayList<>();
      Downloaded got = alice.downloadToMemory(media.mediaId(), (id, p) -> seen.add(p)).await();
      assertEquals(media, got.media());
      assertArrayEquals(data, got.bytes());
      assertEquals(new Progress(data.length, data.length), seen.get(seen.size() - 1));
    }
  }

  @Test
  void image_to_peer() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient bob = server.client("bob");
        CourierClient alice = server.client("alice")) {
      Feed feed = new Feed();
      try (Subscription subscription = bob.subscribe(feed)) {
        feed.ready();
        byte[] picture = png(40, 30);
        Media media =
            alice
                .upload(
                    UploadArgs.builder()
                        .bytes(picture, "cat.png")
                        .kind(MediaKind.IMAGE)
                        .build())
                .await();
        ImageMessage fromRecord = media.imageMessage();
        ImageMessage fromId = alice.imageMessageFromMediaId(media.mediaId());
        for (ImageMessage message : List.of(fromRecord, fromId)) {
          SendReceipt receipt = alice.sendPeerMessage("bob", message, SendOptions.defaults());
          assertEquals(Delivery.DELIVERED, receipt.delivery());
          ReceivedMessage got = feed.nextMessage();
          assertEquals("alice", got.from());
          assertNull(got.channelId(), "a peer message");
          assertFalse(got.offline());
          assertEquals(receipt.messageId(), got.messageId());
          ImageMessage image = assertInstanceOf(ImageMessage.class, got.message());
          assertEquals(media.mediaId(), image.mediaId());
          assertEquals("cat.png", image.fileName());
          assertEquals(media.size(), image.size());
          assertEquals(40, image.width());
          assertEquals(30, image.height());
          assertArrayEquals(picture, bob.downloadToMemory(image.mediaId()).await().bytes());
        }
        assertTrue(subscription.isOpen());
      }
    }
  }

  @Test
  void file_to_channel() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice = server.client("alice");
        CourierClient bob = server.client("bob")) {
      alice.joinChannel("team");
      bob.joinChannel("team");
      assertEquals(List.of("alice", "bob"), bob.channelMembers("team"));
      Feed bobFeed = new Feed();
      Feed aliceFeed = new Feed();
      try (Subscription b = bob.subscribe(bobFeed);
          Subscription a = alice.subscribe(aliceFeed)) {
        bobFeed.ready();
        aliceFeed.ready();
        Media media =
            alice.upload(UploadArgs.builder().bytes(pattern(70_000, 6), "plan.pdf").build()).await();
        alice.sendChannelMessage("team", media.fileMessage());
        ReceivedMessage got = bobFeed.nextMessage();
        assertEquals("alice", got.from());
        assertEquals("team", got.channelId());
        FileMessage file = assertInstanceOf(FileMessage.class, got.message());
        assertEquals(media.mediaId(), file.mediaId());
        assertEquals("plan.pdf", file.fileName());
        assertEquals(70_000, file.size());
        // alice's own feed does not get her channel message: the next thing it sees is a
        // peer message sent after it.
        SendReceipt marker = bob.sendPeerMessage("alice", Message.text("marker"), SendOptions.defaults());
        assertEquals(marker.messageId(), aliceFeed.nextMessage().messageId());
      }
      bob.leaveChannel("team");
      assertEquals(List.of("alice"), alice.channelMembers("team"));
    }
  }

  @Test
  void offline_cached_then_delivered() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice = server.client("alice");
        CourierClient bob = server.client("bob")) {
      SendReceipt cached =
          alice.sendPeerMessage(
              "bob", Message.text("while you were out"), SendOptions.offlineMessaging());
      assertEquals(Delivery.CACHED, cached.delivery());
      PeerUnreachableException lost =
          assertThrows(
              PeerUnreachableException.class,
              () -> alice.sendPeerMessage("bob", Message.text("lost"), SendOptions.defaults()));
      assertEquals("bob", lost.peer());

      Feed feed = new Feed();
      try (Subscription subscription = bob.subscribe(feed)) {
        Feed.ReadyResult ready = feed.ready();
        assertEquals(1, ready.offlineCount());
        assertEquals(1, ready.before().size());
        ReceivedMessage got = ready.before().get(0);
        assertTrue(got.offline());
        assertEquals("alice", got.from());
        assertEquals(cached.messageId(), got.messageId());
        assertEquals(Message.text("while you were out"), got.message());
        Map<String, Boolean> online = alice.queryPeersOnlineStatus(List.of("bob", "carol"));
        assertEquals(List.of("bob", "carol"), new ArrayList<>(online.keySet()));
        assertEquals(List.of(true, false), new ArrayList<>(online.values()));
      }
    }
  }

  @Test
  void typed_errors() throws Exception {
    String unknown = "0123456789abcdef0123456789abcdef";
    try (TestServer small = TestServer.start("--max-upload-size", "1000", "--media-ttl", "1s");
        CourierClient alice = small.client("alice")) {
      MediaTooLargeException tooLarge =
          assertThrows(
              MediaTooLargeException.class,
              () -> alice.upload(UploadArgs.builder().bytes(pattern(1001, 7), "big").build()).await());
      assertEquals(Status.Code.INVALID_ARGUMENT, tooLarge.code());
      assertEquals(ErrorReason.MEDIA_TOO_LARGE, tooLarge.reason());

      assertThrows(NotFoundException.class, () -> alice.getMedia(unknown));
      assertThrows(NotFoundException.class, () -> alice.downloadToMemory(unknown).await());
      MediaUnavailableException unavailable =
          assertThrows(
              MediaUnavailableException.class,
              () -> alice.sendPeerMessage("bob", ImageMessage.of(unknown), SendOptions.offlineMessaging()));
      assertEquals(ErrorReason.MEDIA_UNAVAILABLE, unavailable.reason());
      assertEquals(Status.Code.FAILED_PRECONDITION, unavailable.code());
      assertThrows(InvalidArgumentException.class, () -> alice.downloadToMemory("../etc/passwd"));

      Media shortLived =
          alice.upload(UploadArgs.builder().bytes(pattern(10, 8), "short-lived").build()).await();
      Thread.sleep(1500);
      assertThrows(NotFoundException.class, () -> alice.getMedia(shortLived.mediaId()));

      alice.sendPeerMessage("bob", Message.text("x".repeat(32 * 1024)), SendOptions.offlineMessaging());
      MessageTooLargeException over =
          assertThrows(
              MessageTooLargeException.class,
              () ->
                  alice.sendPeerMessage(
                      "bob", Message.text("x".repeat(32 * 1024 + 1)), SendOptions.offlineMessaging()));
      assertEquals(ErrorReason.MESSAGE_TOO_LARGE, over.reason());
    }

    // A 1-minute rate window: the 181st message is refused however slowly this machine
    // sends the first 180.
    try (TestServer server = TestServer.start("--rate-window", "1m");
        CourierClient alice = server.client("alice")) {
      // The client holds its transfers to 9 before the server has to.
      List<Transfer<Media>> held = new ArrayList<>();
      List<GatedStream> sources = new ArrayList<>();
      for (int i = 0; i < 9; i++) {
        GatedStream source = new GatedStream();
        sources.add(source);
        held.add(alice.upload(UploadArgs.builder().stream(source, 10, "slow").build()));
      }
      server.waitInFlight(9);
      TooManyTransfersException tenth =
          assertThrows(
              TooManyTransfersException.class,
              () -> alice.upload(UploadArgs.builder().bytes(pattern(10, 9), "tenth").build()));
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, tenth.code());
      assertEquals(ErrorReason.TOO_MANY_TRANSFERS, tenth.reason());
      assertEquals(9, server.metric("courier_transfers_in_flight"), "the 10th never reached the server");
      held.forEach(Transfer::cancel);
      for (Transfer<Media> transfer : held) {
        assertThrows(CancelledException.class, transfer::await);
      }
      sources.forEach(GatedStream::close);
      // The client frees its slots at once; the server frees its own as soon as it sees
      // each cancellation, which under load can take a moment: wait for that, so the
      // next upload meets neither limit.
      server.waitInFlight(0);
      alice.upload(UploadArgs.builder().bytes(pattern(10, 9), "after").build()).await();

      // The rate limit.
      RateLimitedException limited = null;
      int refusedAt = -1;
      for (int i = 0; i < 181 && limited == null; i++) {
        try {
          alice.sendPeerMessage("bob", Message.text("hi"), SendOptions.defaults());
        } catch (PeerUnreachableException offline) {
          // bob is offline: the message counts all the same.
        } catch (RateLimitedException e) {
          limited = e;
          refusedAt = i;
        }
      }
      assertEquals(180, refusedAt, "the 181st message in the window is refused");
      assertEquals(ErrorReason.RATE_LIMITED, limited.reason());

      try (CourierClient forged =
          CourierClient.builder().endpoint(server.url()).token("not-a-token").build()) {
        UnauthenticatedException bad =
            assertThrows(UnauthenticatedException.class, () -> forged.getMedia(unknown));
        assertEquals(Status.Code.UNAUTHENTICATED, bad.code());
        assertThrows(UnauthenticatedException.class, () -> forged.joinChannel("c"));
      }
    }
  }

  // ---- helpers ----

  static void await(CountDownLatch latch) {
    try {
      latch.await(30, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  static void waitUntil(java.util.function.BooleanSupplier condition, String what)
      throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (!condition.getAsBoolean()) {
      assertTrue(System.nanoTime() < deadline, "timed out waiting until " + what);
      Thread.sleep(10);
    }
  }

  static List<String> list(Path folder) throws java.io.IOException {
    try (Stream<Path> files = Files.list(folder)) {
      return files.map(p -> p.getFileName().toString()).sorted().toList();
    }
  }
}
