package dev.courier;

import java.time.Instant;

/**
 * The server's receipt for a sent message.
 *
 * @param messageId the ID the server gave the message
 * @param serverTime when the server accepted it
 * @param delivery delivered or cached (channel messages are always delivered)
 */
public record SendReceipt(String messageId, Instant serverTime, Delivery delivery) {}
