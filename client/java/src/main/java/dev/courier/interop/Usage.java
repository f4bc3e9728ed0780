package dev.courier.interop;

/** A command line the interop client cannot run: exit status 2. */
final class Usage extends Exception {
  private static final long serialVersionUID = 1L;

  static final String TEXT =
      """
      usage: interop [--server URL] [--token TOKEN] COMMAND ...
        upload PATH [--image] [--resume [--stop-after-parts N]]
        send (--to PEER | --channel CH) (--text T | --image PATH | --file PATH | --media-id ID) [--offline] [--client-message-id ID]
        join CH | leave CH | members CH | online USER...
        download MEDIA_ID -o PATH
        thumbnail MEDIA_ID [--max-edge N] -o PATH
        url MEDIA_ID [--max-edge N] [--ttl DURATION]
        delete MEDIA_ID
        listen [--after CURSOR] [--save DIR] [--count N]
      The server and token also come from COURIER_SERVER and COURIER_TOKEN; several
      replicas' URLs may be given, comma-separated.""";

  Usage(String message) {
    super(message);
  }
}
