package dev.courier;

import java.util.Arrays;
import java.util.Objects;

/**
 * A message of bytes that courier does not interpret.
 *
 * @param payload the bytes; they count towards the 32 KiB message limit
 * @param description a short description of the payload, such as a format name
 */
public record RawMessage(byte[] payload, String description) implements Message {
  /**
   * A raw message; the payload is copied.
   *
   * @param payload the bytes
   * @param description what they are ({@code ""} for nothing)
   */
  public RawMessage {
    payload = payload.clone();
    description = Objects.requireNonNullElse(description, "");
  }

  /**
   * The payload (a copy).
   *
   * @return the bytes
   */
  @Override
  public byte[] payload() {
    return payload.clone();
  }

  @Override
  public boolean equals(Object other) {
    return other instanceof RawMessage that
        && Arrays.equals(payload, that.payload)
        && description.equals(that.description);
  }

  @Override
  public int hashCode() {
    return 31 * Arrays.hashCode(payload) + description.hashCode();
  }

  @Override
  public String toString() {
    return "RawMessage[" + payload.length + " bytes, description=" + description + "]";
  }
}
