package dev.courier;

import static dev.courier.TestData.MIB;
import static dev.courier.TestData.pattern;
import static dev.courier.TestData.sha256;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The header-only re-upload (as client/rust/tests/reupload.rs): content this user stored
 * before completes without its bytes; anyone else's upload of it sends them.
 */
@Timeout(120)
class ReuploadTest {
  @Test
  void a_repeated_upload_does_not_resend(@TempDir Path dir) throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice = server.client("alice");
        CourierClient bob = server.client("bob")) {
      Path path = dir.resolve("movie.bin");
      byte[] data = pattern(4 * MIB, 8);
      Files.write(path, data);

      long before = server.metric("courier_upload_bytes_total");
      Media first = alice.upload(UploadArgs.file(path)).await();
      assertEquals(
          data.length,
          server.metric("courier_upload_bytes_total") - before,
          "the first upload sends");

      // Alice again, from the file and from memory: no byte is sent, a new media ID.
      before = server.metric("courier_upload_bytes_total");
      List<Progress> progress = new CopyOnWriteArrayList<>();
      Media again =
          alice
              .upload(
                  UploadArgs.builder()
                      .file(path)
                      .progressListener((id, p) -> progress.add(p))
                      .build())
              .await();
      Media fromMemory =
          alice.upload(UploadArgs.builder().bytes(data, "copy.bin").build()).await();
      assertEquals(
          0, server.metric("courier_upload_bytes_total") - before, "a re-upload sends nothing");
      assertNotEquals(first.mediaId(), again.mediaId());
      assertNotEquals(again.mediaId(), fromMemory.mediaId());
      assertEquals("copy.bin", fromMemory.fileName());
      for (Media media : List.of(again, fromMemory)) {
        assertEquals(sha256(data), media.sha256());
        assertEquals(data.length, media.size());
      }
      Progress last = progress.get(progress.size() - 1);
      assertEquals(new Progress(data.length, data.length), last, "a re-upload ends done");
      assertArrayEquals(data, alice.downloadToMemory(again.mediaId()).await().bytes());

      // Bob's upload of the same content sends every byte.
      before = server.metric("courier_upload_bytes_total");
      Media bobs = bob.upload(UploadArgs.file(path)).await();
      assertEquals(
          data.length,
          server.metric("courier_upload_bytes_total") - before,
          "another user sends");
      assertEquals(sha256(data), bobs.sha256());

      // A stream, read only once, is always sent.
      before = server.metric("courier_upload_bytes_total");
      try (var in = Files.newInputStream(path)) {
        alice.upload(UploadArgs.builder().stream(in, data.length, "stream.bin").build()).await();
      }
      assertEquals(
          data.length, server.metric("courier_upload_bytes_total") - before, "a stream sends");
    }
  }
}
