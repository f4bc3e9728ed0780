package dev.courier;

/**
 * How far a transfer has come.
 *
 * @param done bytes moved so far
 * @param total bytes in all (0 for a download until the record arrives)
 */
public record Progress(long done, long total) {}
