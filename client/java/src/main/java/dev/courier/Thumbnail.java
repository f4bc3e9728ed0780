package dev.courier;

/**
 * A thumbnail made by the server: at most 96, 320 or 640 pixels on its longer side, upright
 * (EXIF orientation applied).
 *
 * @param contentType {@code image/jpeg}, or {@code image/png} for an image with transparency
 * @param width the width in pixels
 * @param height the height in pixels
 * @param data the encoded image
 */
public record Thumbnail(String contentType, int width, int height, byte[] data) {}
