package dev.courier;

import java.time.Duration;

/**
 * What {@link CourierClient#mediaUrl} links to, and for how long.
 *
 * @param maxEdge 0 for the object itself; otherwise a link to its thumbnail of at most this
 *     many pixels on the longer side, rounded up by the server to 96, 320 or 640 (the media
 *     must then be an image)
 * @param lifetime how long the link works; {@code null} for the server's default (5
 *     minutes). The server cuts it to its maximum (1 hour), and never lets it outlive the
 *     media nor the caller's token
 */
public record MediaUrlOptions(int maxEdge, Duration lifetime) {
  /**
   * Checks the values.
   *
   * @param maxEdge 0, or the thumbnail's longest side in pixels
   * @param lifetime the link's life, positive, or {@code null}
   */
  public MediaUrlOptions {
    if (maxEdge < 0) {
      throw new IllegalArgumentException("maxEdge is 0 (the object) or a number of pixels");
    }
    if (lifetime != null && (lifetime.isNegative() || lifetime.isZero())) {
      throw new IllegalArgumentException("a link's lifetime is positive");
    }
  }

  /**
   * A link to the object itself, for the server's default lifetime.
   *
   * @return the options
   */
  public static MediaUrlOptions defaults() {
    return new MediaUrlOptions(0, null);
  }

  /**
   * These options for a link to the thumbnail of at most {@code maxEdge} pixels on the
   * longer side (0: the object itself).
   *
   * @param maxEdge the pixels, 0 or more
   * @return the options
   */
  public MediaUrlOptions withMaxEdge(int maxEdge) {
    return new MediaUrlOptions(maxEdge, lifetime);
  }

  /**
   * These options with the link's lifetime.
   *
   * @param lifetime how long the link works, positive
   * @return the options
   */
  public MediaUrlOptions withLifetime(Duration lifetime) {
    return new MediaUrlOptions(maxEdge, lifetime);
  }
}
