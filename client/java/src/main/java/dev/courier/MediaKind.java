package dev.courier;

/** Whether an object was uploaded as an image or as a file. */
public enum MediaKind {
  /** An image: the server reads its width and height (JPEG, PNG, BMP, GIF, WebP). */
  IMAGE,
  /** Any other file. */
  FILE
}
