package dev.courier;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** The README's example, extracted and run as written against a live server. */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class ReadmeExampleTest {
  @TempDir Path dir;

  @Test
  void the_readme_fragment_compiles() throws Exception {
    String readme = Files.readString(Path.of("README.md"));
    Matcher block = Pattern.compile("```java\n(.*?)```", Pattern.DOTALL).matcher(readme);
    assertTrue(block.find() && block.find(), "README.md has a second java block");
    String source =
        "import dev.courier.*;\n"
            + "import dev.courier.errors.CourierException;\n"
            + "import java.io.IOException;\n"
            + "import java.nio.file.Path;\n"
            + "class Fragment {\n"
            + "  static Subscription run(CourierClient bob, Path inbox) {\n"
            + block.group(1)
            + "    return feed;\n  }\n}\n";
    Path file = dir.resolve("Fragment.java");
    Files.writeString(file, source);
    javax.tools.JavaCompiler javac = javax.tools.ToolProvider.getSystemJavaCompiler();
    java.io.ByteArrayOutputStream errors = new java.io.ByteArrayOutputStream();
    int status =
        javac.run(
            null,
            errors,
            errors,
            "-cp",
            classpath(),
            "-d",
            dir.toString(),
            file.toString());
    assertEquals(0, status, "the README fragment does not compile:\n" + errors);
  }

  private static String classpath() throws java.io.IOException {
    return Path.of("target/classes").toAbsolutePath()
        + java.io.File.pathSeparator
        + Files.readString(Path.of("target/runtime-classpath.txt")).trim();
  }

  @Test
  void the_readme_example_runs_as_written() throws Exception {
    String readme = Files.readString(Path.of("README.md"));
    Matcher block = Pattern.compile("```java\n(.*?)```", Pattern.DOTALL).matcher(readme);
    assertTrue(block.find(), "README.md has a java block");
    Files.writeString(dir.resolve("Example.java"), block.group(1));
    byte[] picture = TestData.png(40, 30);
    Files.write(dir.resolve("cat.png"), picture);
    String classpath = classpath();

    try (TestServer server = TestServer.start();
        CourierClient bob = server.client("bob")) {
      ProcessBuilder run =
          new ProcessBuilder(
                  Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                  "-cp",
                  classpath,
                  "Example.java")
              .directory(dir.toFile())
              .redirectErrorStream(true);
      run.environment().put("COURIER_SERVER", server.url());
      run.environment().put("COURIER_TOKEN", server.token("alice"));
      Process process = run.start();
      String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertTrue(process.waitFor(120, TimeUnit.SECONDS), "the example finishes");
      assertEquals(0, process.exitValue(), "the example failed:\n" + output);
      Matcher printed = Pattern.compile("CACHED ([0-9a-f]{32}) 40x30").matcher(output);
      assertTrue(printed.find(), "the example printed: " + output);

      // bob, offline until now, gets the image and its bytes.
      Feed feed = new Feed();
      try (Subscription subscription = bob.subscribe(feed)) {
        Feed.ReadyResult ready = feed.ready();
        assertEquals(1, ready.offlineCount());
        ImageMessage image = (ImageMessage) ready.before().get(0).message();
        assertEquals(printed.group(1), image.mediaId());
        assertEquals("cat.png", image.fileName());
        assertArrayEquals(picture, bob.downloadToMemory(image.mediaId()).await().bytes());
      }
    }
  }
}
