package dev.courier;

import static dev.courier.TestData.png;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.courier.errors.ImageRefusedException;
import dev.courier.errors.InvalidArgumentException;
import dev.courier.errors.NotAnImageException;
import dev.courier.errors.NotFoundException;
import java.awt.image.BufferedImage;
import java.io.ByteArrayInputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.zip.CRC32;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Thumbnails (as client/rust/tests/thumbnail.rs): the server's thumbnail at the rounded-up
 * size, and refusals as typed exceptions.
 */
@Timeout(120)
class ThumbnailTest {
  /** A PNG declaring 100,000 x 100,000 pixels: the header of a decompression bomb. */
  private static byte[] bomb() {
    byte[] out = png(1, 1).clone();
    ByteBuffer buffer = ByteBuffer.wrap(out);
    buffer.putInt(16, 100_000);
    buffer.putInt(20, 100_000);
    CRC32 crc = new CRC32();
    crc.update(out, 12, 17);
    buffer.putInt(29, (int) crc.getValue());
    return out;
  }

  private static Media upload(CourierClient client, byte[] data, String name, MediaKind kind)
      throws Exception {
    return client.upload(UploadArgs.builder().bytes(data, name).kind(kind).build()).await();
  }

  @Test
  void thumbnails_come_at_the_rounded_up_size_and_refusals_are_typed() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice = server.client("alice")) {
      Media wide = upload(alice, png(400, 200), "wide.png", MediaKind.IMAGE);
      Thumbnail thumb = alice.thumbnail(wide.mediaId(), 100);
      assertEquals("image/jpeg", thumb.contentType());
      assertArrayEquals(new int[] {320, 160}, new int[] {thumb.width(), thumb.height()});
      BufferedImage decoded = ImageIO.read(new ByteArrayInputStream(thumb.data()));
      assertArrayEquals(
          new int[] {320, 160}, new int[] {decoded.getWidth(), decoded.getHeight()});
      Media small = upload(alice, png(50, 40), "small.png", MediaKind.IMAGE);
      Thumbnail same = alice.thumbnail(small.mediaId(), 640);
      assertArrayEquals(
          new int[] {50, 40}, new int[] {same.width(), same.height()}, "not enlarged");

      Media text =
          upload(
              alice,
              "no picture here".getBytes(StandardCharsets.UTF_8),
              "notes.txt",
              MediaKind.FILE);
      assertThrows(NotAnImageException.class, () -> alice.thumbnail(text.mediaId(), 96));
      Media large = upload(alice, bomb(), "bomb.png", MediaKind.IMAGE);
      assertThrows(ImageRefusedException.class, () -> alice.thumbnail(large.mediaId(), 96));
      assertThrows(InvalidArgumentException.class, () -> alice.thumbnail(wide.mediaId(), 0));
      assertThrows(
          NotFoundException.class,
          () -> alice.thumbnail("00112233445566778899aabbccddeeff", 96));
    }
  }
}
