package dev.courier;

/**
 * A download held in memory.
 *
 * @param media the record of the object
 * @param bytes its bytes, verified against the record's size and SHA-256
 */
public record Downloaded(Media media, byte[] bytes) {}
