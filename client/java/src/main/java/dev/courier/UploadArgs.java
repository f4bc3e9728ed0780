package dev.courier;

import java.io.ByteArrayInputStream;
import java.io.InputStream;
import java.nio.file.Path;
import java.util.Objects;

/**
 * What to upload and how: a file, a stream of known size, or bytes in memory; as an image
 * or a file; with an optional content type and progress listener. Made with
 * {@link #builder()}, or {@link #image(Path)} and {@link #file(Path)} for the usual case.
 *
 * <pre>{@code
 * UploadArgs args = UploadArgs.builder()
 *     .stream(camera, size, "shot.jpg")
 *     .kind(MediaKind.IMAGE)
 *     .progressListener((id, p) -> System.out.println(p.done() + "/" + p.total()))
 *     .build();
 * }</pre>
 */
public final class UploadArgs {
  /** A file to read, or null for a stream. */
  private final Path path;

  /** A stream to read, or null for a file. */
  private final InputStream stream;

  /** The content when held in memory (then {@link #stream} reads it), or null. */
  private final byte[] bytes;

  /** How many bytes the stream yields (for a file: read at start). */
  private final long size;

  /** The display name; for a file, its name when not set. */
  private final String fileName;

  /** Image or file. */
  private final MediaKind kind;

  /** The MIME type, or "" to let the server detect it. */
  private final String contentType;

  /** Who hears about progress, or null. */
  private final ProgressListener listener;

  private UploadArgs(Builder b) {
    this.path = b.path;
    this.stream = b.stream;
    this.bytes = b.bytes;
    this.size = b.size;
    this.fileName = b.fileName;
    this.kind = b.kind;
    this.contentType = b.contentType;
    this.listener = b.listener;
  }

  /**
   * A builder of upload arguments.
   *
   * @return a new builder
   */
  public static Builder builder() {
    return new Builder();
  }

  /**
   * Uploading the image at {@code path} under its file name.
   *
   * @param path the image file
   * @return the arguments
   */
  public static UploadArgs image(Path path) {
    return builder().file(path).kind(MediaKind.IMAGE).build();
  }

  /**
   * Uploading the file at {@code path} under its file name.
   *
   * @param path the file
   * @return the arguments
   */
  public static UploadArgs file(Path path) {
    return builder().file(path).kind(MediaKind.FILE).build();
  }

  Path path() {
    return path;
  }

  InputStream stream() {
    return stream;
  }

  byte[] bytes() {
    return bytes;
  }

  long size() {
    return size;
  }

  String fileName() {
    return fileName;
  }

  MediaKind kind() {
    return kind;
  }

  String contentType() {
    return contentType;
  }

  ProgressListener listener() {
    return listener;
  }

  /** Builds {@link UploadArgs}; a source ({@code file}, {@code stream} or {@code bytes}) is required. */
  public static final class Builder {
    private Path path;
    private InputStream stream;
    private byte[] bytes;
    private long size = -1;
    private String fileName;
    private MediaKind kind = MediaKind.FILE;
    private String contentType = "";
    private ProgressListener listener;

    private Builder() {}

    /**
     * Upload the file at {@code path}; its name is the display name unless
     * {@link #fileName(String)} says otherwise.
     *
     * @param path the file
     * @return this builder
     */
    public Builder file(Path path) {
      this.path = Objects.requireNonNull(path, "path");
      this.stream = null;
      this.bytes = null;
      return this;
    }

    /**
     * Upload {@code size} bytes read from {@code stream} (a camera, a socket, ...). Exactly
     * {@code size} bytes are read; the stream is not closed. If the stream blocks, a
     * cancel still ends the transfer at once (the reading thread is interrupted and
     * leaves when the read returns).
     *
     * @param stream the source
     * @param size how many bytes it yields
     * @param fileName the display file name
     * @return this builder
     */
    public Builder stream(InputStream stream, long size, String fileName) {
      this.stream = Objects.requireNonNull(stream, "stream");
      this.size = size;
      this.fileName = Objects.requireNonNull(fileName, "fileName");
      this.path = null;
      this.bytes = null;
      return this;
    }

    /**
     * Upload {@code bytes} held in memory. Like a file, and unlike a stream, they are
     * hashed first and offered to the server by SHA-256 and size alone, so that content
     * this user uploaded before is not sent again.
     *
     * @param bytes the content
     * @param fileName the display file name
     * @return this builder
     */
    public Builder bytes(byte[] bytes, String fileName) {
      byte[] copy = bytes.clone();
      stream(new ByteArrayInputStream(copy), copy.length, fileName);
      this.bytes = copy;
      return this;
    }

    /**
     * The display file name (1 to 255 bytes of UTF-8, no control characters).
     *
     * @param fileName the name receivers see
     * @return this builder
     */
    public Builder fileName(String fileName) {
      this.fileName = Objects.requireNonNull(fileName, "fileName");
      return this;
    }

    /**
     * Image (the server reads width and height) or file; file by default.
     *
     * @param kind the kind
     * @return this builder
     */
    public Builder kind(MediaKind kind) {
      this.kind = Objects.requireNonNull(kind, "kind");
      return this;
    }

    /**
     * The MIME type; by default the server detects image types and otherwise records
     * {@code application/octet-stream}.
     *
     * @param contentType the MIME type
     * @return this builder
     */
    public Builder contentType(String contentType) {
      this.contentType = Objects.requireNonNull(contentType, "contentType");
      return this;
    }

    /**
     * Who hears about progress, from the first byte on.
     *
     * @param listener the listener
     * @return this builder
     */
    public Builder progressListener(ProgressListener listener) {
      this.listener = listener;
      return this;
    }

    /**
     * The arguments.
     *
     * @return the arguments
     * @throws IllegalStateException when no source was given
     */
    public UploadArgs build() {
      if (path == null && stream == null) {
        throw new IllegalStateException("say what to upload: file(path), stream(...) or bytes(...)");
      }
      return new UploadArgs(this);
    }
  }
}
