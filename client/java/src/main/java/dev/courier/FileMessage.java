package dev.courier;

import java.util.Arrays;
import java.util.Objects;

/**
 * A file message: a media ID plus what receivers show before downloading. A blank name
 * or size 0 is filled by the server from the media record.
 *
 * @param mediaId the media ID of the uploaded file
 * @param fileName the display file name
 * @param size the size in bytes
 * @param thumbnail a small preview, delivered as given (counts towards the 32 KiB limit)
 */
public record FileMessage(String mediaId, String fileName, long size, byte[] thumbnail)
    implements Message {

  /**
   * A file message; the thumbnail is copied.
   *
   * @param mediaId the media ID, not null
   * @param fileName the display name ({@code ""} or null: the server fills it)
   * @param size the size (0: the server fills it)
   * @param thumbnail a preview, or null for none
   */
  public FileMessage {
    Objects.requireNonNull(mediaId, "mediaId");
    fileName = Objects.requireNonNullElse(fileName, "");
    thumbnail = thumbnail == null ? new byte[0] : thumbnail.clone();
  }

  /**
   * A file message naming only the media ID: the server fills in the rest.
   *
   * @param mediaId the media ID of an uploaded file
   * @return the message
   */
  public static FileMessage of(String mediaId) {
    return new FileMessage(mediaId, "", 0, null);
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
    return other instanceof FileMessage that
        && mediaId.equals(that.mediaId)
        && fileName.equals(that.fileName)
        && size == that.size
        && Arrays.equals(thumbnail, that.thumbnail);
  }

  @Override
  public int hashCode() {
    return Objects.hash(mediaId, fileName, size) * 31 + Arrays.hashCode(thumbnail);
  }

  @Override
  public String toString() {
    return "FileMessage[mediaId=" + mediaId + ", fileName=" + fileName + ", size=" + size
        + ", thumbnail " + thumbnail.length + " bytes]";
  }
}
