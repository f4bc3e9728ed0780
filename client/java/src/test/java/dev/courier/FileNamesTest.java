package dev.courier;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class FileNamesTest {
  @Test
  void names_lose_their_danger() {
    assertEquals("cat.png", FileNames.safeFileName("cat.png", "x"));
    assertEquals("_.._etc_passwd", FileNames.safeFileName("../../etc/passwd", "x"));
    assertEquals("a_b_c", FileNames.safeFileName("a\\b\nc", "x"));
    assertEquals("id", FileNames.safeFileName("..", "id"));
    assertEquals("id", FileNames.safeFileName("", "id"));
    assertEquals("bashrc", FileNames.safeFileName(".bashrc", "id"));
    assertEquals("id", FileNames.safeFileName("/", "id"));
  }

  @Test
  void existing_files_get_a_suffix(@TempDir Path dir) throws Exception {
    Path first = FileNames.uniquePath(dir, "cat.png", "x");
    assertEquals(dir.resolve("cat.png"), first);
    Files.write(first, new byte[] {1});
    assertEquals(dir.resolve("cat (1).png"), FileNames.uniquePath(dir, "cat.png", "x"));
    Files.write(dir.resolve("cat (1).png"), new byte[] {2});
    assertEquals(dir.resolve("cat (2).png"), FileNames.uniquePath(dir, "cat.png", "x"));
  }
}
