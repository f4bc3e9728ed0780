package dev.courier;

import java.util.Objects;

/**
 * A text message.
 *
 * @param text the UTF-8 text; it counts towards the 32 KiB message limit
 */
public record TextMessage(String text) implements Message {
  /**
   * A text message.
   *
   * @param text the text, not null
   */
  public TextMessage {
    Objects.requireNonNull(text, "text");
  }
}
