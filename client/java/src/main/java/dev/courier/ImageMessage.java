package dev.courier;

import java.util.Arrays;
import java.util.Objects;

/**
 * An image message: a media ID plus what receivers show before downloading. Fields left
 * empty (a blank name, size 0, width or height 0) are filled by the server from the
 * media record; a width and height set by the sender are kept as sent.
 *
 * @param mediaId the media ID of the uploaded image
 * @param fileName the display file name
 * @param size the size in bytes
 * @param width the width in pixels
 * @param height the height in pixels
 * @param thumbnail a small preview, delivered as given (counts towards the 32 KiB limit)
 * @param thumbnailWidth the preview's width
 * @param thumbnailHeight the preview's height
 */
public record ImageMessage(
    String mediaId,
    String fileName,
    long size,
    int width,
    int height,
    byte[] thumbnail,
    int thumbnailWidth,
    int thumbnailHeight)
    implements Message {

  /**
   * An image message; the thumbnail is copied.
   *
   * @param mediaId the media ID, not null
   * @param fileName the display name ({@code ""} or null: the server fills it)
   * @param size the size (0: the server fills it)
   * @param width the width (0: the server fills it)
   * @param height the height (0: the server fills it)
   * @param thumbnail a preview, or null for none
   * @param thumbnailWidth the preview's width
   * @param thumbnailHeight the preview's height
   */
  public ImageMessage {
    Objects.requireNonNull(mediaId, "mediaId");
    fileName = Objects.requireNonNullElse(fileName, "");
    thumbnail = thumbnail == null ? new byte[0] : thumbnail.clone();
  }

  /**
   * An image message naming only the media ID: the server fills in the rest from the
   * record (Agora's {@code createImageMessageByMediaId}).
   *
   * @param mediaId the media ID of an uploaded image
   * @return the message
   */
  public static ImageMessage of(String mediaId) {
    return new ImageMessage(mediaId, "", 0, 0, 0, null, 0, 0);
  }

  /**
   * This message with a preview image.
   *
   * @param bytes the encoded preview
   * @param width its width in pixels
   * @param height its height in pixels
   * @return a new message
   */
  public ImageMessage withThumbnail(byte[] bytes, int width, int height) {
    return new ImageMessage(mediaId, fileName, size, this.width, this.height, bytes, width, height);
  }

  /**
   * The preview (a copy).
   *
   * @return the encoded preview, empty for none
   */
  @Override
  public byte[] thumbnail() {
    return thumbnail.clone();
  }

  @Override
  public boolean equals(Object other) {
    return other instanceof ImageMessage that
        && mediaId.equals(that.mediaId)
        && fileName.equals(that.fileName)
        && size == that.size
        && width == that.width
        && height == that.height
        && Arrays.equals(thumbnail, that.thumbnail)
        && thumbnailWidth == that.thumbnailWidth
        && thumbnailHeight == that.thumbnailHeight;
  }

  @Override
  public int hashCode() {
    return Objects.hash(mediaId, fileName, size, width, height, thumbnailWidth, thumbnailHeight)
        * 31
        + Arrays.hashCode(thumbnail);
  }

  @Override
  public String toString() {
    return "ImageMessage[mediaId=" + mediaId + ", fileName=" + fileName + ", size=" + size
        + ", " + width + "x" + height + ", thumbnail " + thumbnail.length + " bytes]";
  }
}
