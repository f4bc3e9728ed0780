package dev.courier;

/**
 * The content of a peer or channel message: text, raw bytes, an image or a file. Switch
 * on it with {@code instanceof} patterns.
 */
public sealed interface Message permits TextMessage, RawMessage, ImageMessage, FileMessage {
  /**
   * A text message.
   *
   * @param text the UTF-8 text (it counts towards the 32 KiB message limit)
   * @return the message
   */
  static TextMessage text(String text) {
    return new TextMessage(text);
  }

  /**
   * A raw message for the application's own formats.
   *
   * @param payload the bytes
   * @param description a short description of the payload, such as a format name
   * @return the message
   */
  static RawMessage raw(byte[] payload, String description) {
    return new RawMessage(payload, description);
  }
}
