package dev.courier.interop;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** The interop client's command line: a command, positional words and flags. */
final class Args {
  /** The command (upload, send, ...). */
  final String command;

  /** Words that are not flags, in order. */
  final List<String> positional = new ArrayList<>();

  /** Flags with a value. */
  private final Map<String, String> values = new HashMap<>();

  /** Flags without a value that were given. */
  private final Set<String> switches = new HashSet<>();

  /** The global --server, or null. */
  final String server;

  /** The global --token, or null. */
  final String token;

  private Args(String command, String server, String token) {
    this.command = command;
    this.server = server;
    this.token = token;
  }

  /**
   * Parses {@code argv}. {@code valued} names the flags that take a value, {@code bare}
   * those that do not, per command; anything else is a usage error.
   */
  static Args parse(String[] argv) throws Usage {
    String server = null;
    String token = null;
    String command = null;
    List<String> rest = new ArrayList<>();
    for (int i = 0; i < argv.length; i++) {
      String a = argv[i];
      if (a.equals("--server") || a.equals("--token")) {
        if (i + 1 >= argv.length) {
          throw new Usage(a + " needs a value");
        }
        if (a.equals("--server")) {
          server = argv[++i];
        } else {
          token = argv[++i];
        }
      } else if (a.equals("--json")) {
        // The output is always JSON; accepted for symmetry with `courier --json`.
      } else if (command == null && !a.startsWith("-")) {
        command = a;
      } else {
        rest.add(a);
      }
    }
    if (command == null) {
      throw new Usage("no command");
    }
    Args args = new Args(command, server, token);
    Set<String> valued = Set.of();
    Set<String> bare = Set.of();
    switch (command) {
      case "upload" -> {
        valued = Set.of("--stop-after-parts");
        bare = Set.of("--image", "--resume");
      }
      case "send" -> {
        valued =
            Set.of(
                "--to", "--channel", "--text", "--image", "--file", "--media-id",
                "--client-message-id");
        bare = Set.of("--offline");
      }
      case "download" -> valued = Set.of("-o", "--output");
      case "thumbnail" -> valued = Set.of("-o", "--output", "--max-edge");
      case "listen" -> valued = Set.of("--save", "--count", "--after");
      case "url" -> valued = Set.of("--max-edge", "--ttl");
      case "join", "leave", "members", "online", "delete" -> {}
      default -> throw new Usage("unknown command " + command);
    }
    for (int i = 0; i < rest.size(); i++) {
      String a = rest.get(i);
      if (valued.contains(a)) {
        if (i + 1 >= rest.size()) {
          throw new Usage(a + " needs a value");
        }
        if (args.values.put(a, rest.get(++i)) != null) {
          throw new Usage(a + " given twice");
        }
      } else if (bare.contains(a)) {
        args.switches.add(a);
      } else if (a.startsWith("-") && a.length() > 1) {
        throw new Usage("unknown flag " + a + " for " + command);
      } else {
        args.positional.add(a);
      }
    }
    return args;
  }

  String value(String flag) {
    return values.get(flag);
  }

  boolean has(String flag) {
    return switches.contains(flag);
  }

  /** Exactly {@code n} positional words, or a usage error. */
  List<String> exactly(int n, String what) throws Usage {
    if (positional.size() != n) {
      throw new Usage(command + " takes " + what);
    }
    return positional;
  }
}
