package dev.courier;

import java.time.Instant;

/**
 * The server's record of a stored image or file, as an upload returns it and a download
 * checks against it.
 *
 * @param mediaId the media ID that messages carry and downloads use (32 lowercase hex)
 * @param kind image or file
 * @param fileName the display file name given by the uploader
 * @param size the size in bytes
 * @param sha256 the SHA-256 of the bytes, in lowercase hex
 * @param contentType the MIME type
 * @param width the width in pixels for JPEG, PNG, BMP, GIF and WebP images, else 0
 * @param height the height in pixels for JPEG, PNG, BMP, GIF and WebP images, else 0
 * @param created when the upload completed
 * @param expires when the object expires (not found from then on)
 */
public record Media(
    String mediaId,
    MediaKind kind,
    String fileName,
    long size,
    String sha256,
    String contentType,
    int width,
    int height,
    Instant created,
    Instant expires) {

  /**
   * An image message for this object, with its name, size and dimensions
   * (Agora's {@code createImageMessageByUploading}).
   *
   * @return the message, ready to send
   */
  public ImageMessage imageMessage() {
    return new ImageMessage(mediaId, fileName, size, width, height, new byte[0], 0, 0);
  }

  /**
   * A file message for this object, with its name and size
   * (Agora's {@code createFileMessageByUploading}).
   *
   * @return the message, ready to send
   */
  public FileMessage fileMessage() {
    return new FileMessage(mediaId, fileName, size, new byte[0]);
  }

  /**
   * An image message for an image, a file message for anything else.
   *
   * @return the message, ready to send
   */
  public Message message() {
    return kind == MediaKind.IMAGE ? imageMessage() : fileMessage();
  }
}
