package dev.courier;

import static dev.courier.TestData.png;
import static dev.courier.TestData.sha256;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import courier.v1.ErrorReasonOuterClass.ErrorReason;
import dev.courier.errors.MediaDeletedException;
import dev.courier.errors.MediaUnavailableException;
import dev.courier.errors.NotFoundException;
import io.grpc.Status;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Scenario 13 of tests/scenarios.md, {@code delete_media}, through the Java client. */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class DeletionTest {
  @TempDir Path dir;

  @Test
  void delete_media() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice = server.client("alice");
        CourierClient bob = server.client("bob");
        CourierClient carol = server.client("carol")) {
      byte[] picture = png(40, 30);
      Media media =
          alice.upload(UploadArgs.builder().bytes(picture, "cat.png").kind(MediaKind.IMAGE).build())
              .await();
      Feed bobFeed = new Feed();
      try (Subscription ignored = bob.subscribe(bobFeed)) {
        bobFeed.ready();
        assertEquals(
            Delivery.DELIVERED,
            alice.sendPeerMessage("bob", media.imageMessage(), SendOptions.defaults()).delivery());
        assertEquals(
            Delivery.CACHED,
            alice
                .sendPeerMessage("carol", media.imageMessage(), SendOptions.offlineMessaging())
                .delivery());
        ImageMessage received = assertInstanceOf(ImageMessage.class, bobFeed.nextMessage().message());
        assertEquals(media.mediaId(), received.mediaId(), "bob got the image before the deletion");
      }

      alice.deleteMedia(media.mediaId());

      // Downloading, getting and thumbnailing it: "media deleted", a NOT_FOUND.
      Path target = dir.resolve("cat.png");
      MediaDeletedException download =
          assertThrows(
              MediaDeletedException.class,
              () -> bob.downloadToFile(media.mediaId(), target).await());
      assertEquals(Status.Code.NOT_FOUND, download.code());
      assertEquals(ErrorReason.MEDIA_DELETED, download.reason());
      assertTrue(Files.notExists(target), "nothing is left at the path");
      assertTrue(
          Files.notExists(CourierClient.partialPath(target, media.mediaId())), "nor a partial file");
      assertThrows(MediaDeletedException.class, () -> bob.getMedia(media.mediaId()));
      assertThrows(MediaDeletedException.class, () -> bob.downloadToMemory(media.mediaId()).await());
      assertThrows(MediaDeletedException.class, () -> alice.thumbnail(media.mediaId(), 96));

      // A new send naming it: "media unavailable".
      MediaUnavailableException send =
          assertThrows(
              MediaUnavailableException.class,
              () -> alice.sendPeerMessage("bob", media.imageMessage(), SendOptions.offlineMessaging()));
      assertEquals(Status.Code.FAILED_PRECONDITION, send.code());

      // carol, offline until now, gets the message cached before the deletion.
      Feed carolFeed = new Feed();
      try (Subscription ignored = carol.subscribe(carolFeed)) {
        Feed.ReadyResult ready = carolFeed.ready();
        assertEquals(1, ready.offlineCount());
        ReceivedMessage cached = ready.before().get(0);
        assertTrue(cached.offline());
        ImageMessage image = assertInstanceOf(ImageMessage.class, cached.message());
        assertEquals(media.mediaId(), image.mediaId());
      }

      // Deleting again succeeds; bob cannot delete alice's media, which still downloads.
      alice.deleteMedia(media.mediaId());
      Media other =
          alice.upload(UploadArgs.builder().bytes(png(20, 10), "dog.png").kind(MediaKind.IMAGE).build())
              .await();
      NotFoundException notOwner =
          assertThrows(NotFoundException.class, () -> bob.deleteMedia(other.mediaId()));
      assertNotEquals(MediaDeletedException.class, notOwner.getClass(), "worded as unknown");
      assertEquals(
          other.sha256(), sha256(bob.downloadToMemory(other.mediaId()).await().bytes()));
    }
  }
}
