package dev.courier;

/** What became of a sent message. */
public enum Delivery {
  /** Handed to the receivers' open subscriptions. */
  DELIVERED,
  /** The peer was offline; the message is kept for their next subscription. */
  CACHED
}
