package dev.courier;

import static dev.courier.TestData.pattern;
import static dev.courier.TestData.png;
import static dev.courier.TestData.sha256;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.courier.errors.NotAnImageException;
import dev.courier.errors.NotFoundException;
import java.awt.image.BufferedImage;
import java.io.ByteArrayInputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.time.Instant;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Scenario 14 of tests/scenarios.md, {@code media_url}: a link from {@link CourierClient#mediaUrl} that a plain HTTP client, Java's own
 * {@link HttpClient} with no token, fetches whole, by range, conditionally and as a
 * thumbnail.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class MediaUrlTest {
  private static final HttpClient HTTP =
      HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

  private static HttpResponse<byte[]> get(URI url, String... headers) throws Exception {
    HttpRequest.Builder request = HttpRequest.newBuilder(url).timeout(Duration.ofSeconds(10));
    if (headers.length > 0) {
      request.headers(headers);
    }
    return HTTP.send(request.build(), HttpResponse.BodyHandlers.ofByteArray());
  }

  private static String header(HttpResponse<?> response, String name) {
    return response.headers().firstValue(name).orElse("");
  }

  @Test
  void media_url() throws Exception {
    try (TestServer server = TestServer.start();
        CourierClient alice = server.client("alice")) {
      byte[] data = pattern(300 * 1024, 14);
      Media file = alice.upload(UploadArgs.builder().bytes(data, "data.bin").build()).await();
      Media image =
          alice
              .upload(UploadArgs.builder().bytes(png(200, 100), "wide.png").kind(MediaKind.IMAGE).build())
              .await();

      // The object itself: a plain GET, no token, byte-identical.
      Instant asked = Instant.now();
      MediaUrl link = alice.mediaUrl(file.mediaId(), MediaUrlOptions.defaults());
      assertEquals("http", link.url().getScheme());
      assertEquals(server.url(), "http://" + link.url().getAuthority(), "on the server's address");
      assertTrue(
          link.expireTime().isAfter(asked)
              && !link.expireTime().isAfter(asked.plus(Duration.ofMinutes(5)).plusSeconds(2)),
          "expires within the default 5 minutes: " + link.expireTime());
      HttpResponse<byte[]> whole = get(link.url());
      assertEquals(200, whole.statusCode());
      assertArrayEquals(data, whole.body(), "byte-identical");
      String etag = header(whole, "etag");
      assertEquals("\"" + sha256(data) + "\"", etag);
      assertEquals(file.sha256(), sha256(whole.body()));
      assertEquals("nosniff", header(whole, "x-content-type-options"));

      // A single range.
      HttpResponse<byte[]> slice = get(link.url(), "Range", "bytes=262000-270000");
      assertEquals(206, slice.statusCode());
      assertEquals("bytes 262000-270000/307200", header(slice, "content-range"));
      assertArrayEquals(Arrays.copyOfRange(data, 262000, 270001), slice.body(), "the slice");

      // Conditional: the ETag gives 304.
      assertEquals(304, get(link.url(), "If-None-Match", etag).statusCode());

      // A thumbnail link: the 96-pixel JPEG.
      MediaUrl thumb = alice.mediaUrl(image.mediaId(), MediaUrlOptions.defaults().withMaxEdge(90));
      HttpResponse<byte[]> jpeg = get(thumb.url());
      assertEquals(200, jpeg.statusCode());
      assertEquals("image/jpeg", header(jpeg, "content-type"));
      BufferedImage decoded = ImageIO.read(new ByteArrayInputStream(jpeg.body()));
      assertArrayEquals(new int[] {96, 48}, new int[] {decoded.getWidth(), decoded.getHeight()});
      assertThrows(
          NotAnImageException.class,
          () -> alice.mediaUrl(file.mediaId(), MediaUrlOptions.defaults().withMaxEdge(90)));
      assertThrows(
          NotFoundException.class,
          () -> alice.mediaUrl("00112233445566778899aabbccddeeff", MediaUrlOptions.defaults()));

      // A 1-second link answers 410 once it has expired.
      MediaUrl brief =
          alice.mediaUrl(file.mediaId(), MediaUrlOptions.defaults().withLifetime(Duration.ofSeconds(1)));
      assertTrue(brief.expireTime().isBefore(Instant.now().plusSeconds(3)));
      long wait = Duration.between(Instant.now(), brief.expireTime()).toMillis() + 1100;
      Thread.sleep(Math.max(wait, 0));
      assertEquals(410, get(brief.url()).statusCode());
    }
  }
}
