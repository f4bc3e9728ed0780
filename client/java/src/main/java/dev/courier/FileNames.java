package dev.courier;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Safe local file names for received media: a sender chooses the file name, so it must
 * never become a path as it is. No separators or control characters, no hidden or
 * special names, and never an existing file.
 */
public final class FileNames {
  /** The longest name kept, in characters. */
  private static final int MAX_NAME = 200;

  private FileNames() {}

  /**
   * {@code name} made safe to create inside a folder: separators, colons and control
   * characters become {@code _}, leading dots are dropped, and a result with nothing left
   * becomes {@code fallback}.
   *
   * @param name the sender's file name
   * @param fallback the name to use when nothing of {@code name} is left (a media ID)
   * @return a plain file name
   */
  public static String safeFileName(String name, String fallback) {
    StringBuilder cleaned = new StringBuilder();
    name.codePoints()
        .limit(MAX_NAME)
        .forEach(
            c -> {
              if (c == '/' || c == '\\' || c == ':' || Character.isISOControl(c)) {
                cleaned.append('_');
              } else {
                cleaned.appendCodePoint(c);
              }
            });
    String trimmed = cleaned.toString().strip().replaceFirst("^\\.+", "");
    if (trimmed.isEmpty() || trimmed.chars().allMatch(c -> c == '_' || c == '.')) {
      return fallback;
    }
    return trimmed;
  }

  /**
   * A path in {@code dir} for a received file called {@code name} (made safe with
   * {@link #safeFileName}) that does not exist yet: {@code name}, then
   * {@code stem (1).ext}, {@code stem (2).ext}, ...
   *
   * @param dir the folder
   * @param name the sender's file name
   * @param fallback the name to use when nothing of {@code name} is left
   * @return a free path in {@code dir}
   * @throws IOException when ten thousand names are taken
   */
  public static Path uniquePath(Path dir, String name, String fallback) throws IOException {
    String safe = safeFileName(name, fallback);
    Path candidate = dir.resolve(safe);
    if (!Files.exists(candidate)) {
      return candidate;
    }
    int dot = safe.lastIndexOf('.');
    String stem = dot > 0 ? safe.substring(0, dot) : safe;
    String ext = dot > 0 ? safe.substring(dot) : "";
    for (int n = 1; n < 10_000; n++) {
      candidate = dir.resolve(stem + " (" + n + ")" + ext);
      if (!Files.exists(candidate)) {
        return candidate;
      }
    }
    throw new IOException("too many files named like " + safe + " in " + dir);
  }
}
