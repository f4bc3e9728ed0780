"""The Python interop client of docs/interop.md: ``python -m courier.interop``.

A small command-line program on the library, driven by the cross-language matrix
(``client/python/interop`` runs it): ``upload``, ``send``, ``join``, ``leave``,
``members``, ``online``, ``download``, ``thumbnail``, ``url``, ``delete`` and
``listen``, each printing JSON lines on
stdout. The server and token come from ``--server`` / ``COURIER_SERVER`` and
``--token`` / ``COURIER_TOKEN``. A refused call prints
``{"error": {"code", "reason", "message"}}`` on stdout and exits 1; usage errors exit
2. It is also the library's runnable example.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import timezone
from pathlib import Path
from typing import Any, TypeVar

from courier import (
    Client,
    CourierError,
    Disconnected,
    FileMessage,
    ImageMessage,
    Media,
    MediaKind,
    Message,
    PeerUnreachableError,
    RawMessage,
    Ready,
    ReceivedMessage,
    SendReceipt,
    TextMessage,
    Thumbnail,
    Transfer,
    TransferCancelledError,
    UnauthenticatedError,
    unique_path,
)
from courier.errors import local_file_error

T = TypeVar("T")


def emit(value: dict[str, Any]) -> None:
    """Prints one JSON line, at once (a runner may be waiting for it)."""
    print(json.dumps(value), flush=True)


def _millis(media_time: Any) -> int:
    return int(media_time.timestamp() * 1000)


def media_json(media: Media) -> dict[str, Any]:
    """A media record as the contract prints it."""
    return {
        "media_id": media.media_id,
        "kind": media.kind.value,
        "file_name": media.file_name,
        "size": media.size,
        "sha256": media.sha256_hex,
        "content_type": media.content_type,
        "width": media.width,
        "height": media.height,
        "created_ms": _millis(media.created),
        "expires_ms": _millis(media.expires),
    }


def message_json(message: Message) -> dict[str, Any]:
    """A received message body as the contract prints it."""
    if isinstance(message, TextMessage):
        return {"type": "text", "text": message.text}
    if isinstance(message, RawMessage):
        return {
            "type": "raw",
            "payload_hex": message.payload.hex(),
            "description": message.description,
        }
    if isinstance(message, ImageMessage):
        return {
            "type": "image",
            "media_id": message.media_id,
            "file_name": message.file_name,
            "size": message.size,
            "width": message.width,
            "height": message.height,
            "thumbnail_bytes": len(message.thumbnail),
        }
    return {
        "type": "file",
        "media_id": message.media_id,
        "file_name": message.file_name,
        "size": message.size,
        "width": 0,
        "height": 0,
        "thumbnail_bytes": len(message.thumbnail),
    }


def receipt_json(receipt: SendReceipt) -> dict[str, Any]:
    return {
        "message_id": receipt.message_id,
        "state": receipt.delivery.value,
        "server_time_ms": _millis(receipt.server_time),
    }


def sha256_of_file(path: Path) -> str:
    """The SHA-256 (hex) of the bytes now on disk: what a ``saved`` line reports,
    read back rather than taken from the record they were checked against."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(256 * 1024):
                digest.update(block)
    except OSError as e:
        raise local_file_error(e, "read back") from e
    return digest.hexdigest()


def saved_json(media: Media, path: Path) -> dict[str, Any]:
    return {**media_json(media), "event": "saved", "path": str(path), "sha256": sha256_of_file(path)}


def finish(transfer: Transfer[T]) -> T:
    """Waits for a transfer; Ctrl-C cancels it (the server removes what was sent)."""
    try:
        return transfer.result()
    except KeyboardInterrupt:
        transfer.cancel()
        raise


def cmd_upload(client: Client, args: argparse.Namespace) -> None:
    if args.resume:
        kind = MediaKind.IMAGE if args.image else MediaKind.FILE
        done = finish(
            client.start_upload_resumable(args.path, kind=kind, max_parts=args.stop_after_parts)
        )
        if done.media is None:
            emit({"event": "paused", "upload_id": done.upload_id, "committed_size": done.committed_size})
        else:
            emit({**media_json(done.media), "resumed_from": done.resumed_from})
        return
    kind_upload = client.upload_image if args.image else client.upload_file
    emit(media_json(kind_upload(args.path)))



def cmd_send(client: Client, args: argparse.Namespace) -> None:
    message: Message
    if args.text is not None:
        message = TextMessage(args.text)
    elif args.image is not None:
        message = client.upload_image(args.image).image_message()
    elif args.file is not None:
        message = client.upload_file(args.file).file_message()
    else:
        message = client.message_from_media_id(args.media_id)
    if args.to is not None:
        receipt = client.send_peer_message(
            args.to, message, offline=args.offline, client_message_id=args.client_message_id
        )
    else:
        receipt = client.send_channel_message(
            args.channel, message, client_message_id=args.client_message_id
        )
    emit(receipt_json(receipt))


def cmd_join(client: Client, args: argparse.Namespace) -> None:
    client.join_channel(args.channel)
    emit({"channel": args.channel, "result": "joined"})


def cmd_leave(client: Client, args: argparse.Namespace) -> None:
    client.leave_channel(args.channel)
    emit({"channel": args.channel, "result": "left"})


def cmd_members(client: Client, args: argparse.Namespace) -> None:
    emit({"channel": args.channel, "members": client.channel_members(args.channel)})


def cmd_online(client: Client, args: argparse.Namespace) -> None:
    for user, online in client.query_online_status(args.users).items():
        emit({"user_id": user, "online": online})


def cmd_download(client: Client, args: argparse.Namespace) -> None:
    path = Path(args.output)
    media = finish(client.start_download_to_file(args.media_id, path))
    emit(saved_json(media, path))


def thumbnail_json(media_id: str, thumb: Thumbnail, path: Path) -> dict[str, Any]:
    return {
        "event": "thumbnail",
        "media_id": media_id,
        "content_type": thumb.content_type,
        "width": thumb.width,
        "height": thumb.height,
        "size": len(thumb.data),
        "path": str(path),
    }


def write_file(path: Path, data: bytes) -> None:
    """Writes ``data`` at ``path``; a failed write leaves nothing there."""
    try:
        path.write_bytes(data)
    except OSError as e:
        path.unlink(missing_ok=True)
        raise local_file_error(e, "write") from e


def cmd_thumbnail(client: Client, args: argparse.Namespace) -> None:
    path = Path(args.output)
    thumb = client.thumbnail(args.media_id, args.max_edge)
    write_file(path, thumb.data)
    emit(thumbnail_json(args.media_id, thumb, path))


def cmd_url(client: Client, args: argparse.Namespace) -> None:
    link = client.media_url(args.media_id, args.max_edge, args.ttl)
    expire_time = link.expire_time.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    emit({"url": link.url, "expire_time": expire_time})


def cmd_delete(client: Client, args: argparse.Namespace) -> None:
    client.delete_media(args.media_id)
    emit({"media_id": args.media_id, "deleted": True})


def cmd_listen(client: Client, args: argparse.Namespace) -> None:
    save: Path | None = Path(args.save) if args.save is not None else None
    if save is not None:
        try:
            save.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise local_file_error(e, "create the folder") from e
    messages = 0
    with client.subscribe(after=args.after) as feed:
        for event in feed:
            if args.count is not None and messages >= args.count:
                return
            if isinstance(event, Ready):
                name = "reconnected" if event.reconnected else "ready"
                emit(
                    {
                        "event": name,
                        "offline_count": event.offline_count,
                        "cursor": event.cursor,
                        "events_lost": event.events_lost,
                    }
                )
            elif isinstance(event, Disconnected):
                emit({"event": "disconnected", "reason": event.reason})
            elif isinstance(event, ReceivedMessage):
                emit(
                    {
                        "event": "message",
                        "from": event.sender,
                        "channel": event.channel,
                        "message_id": event.message_id,
                        "server_time_ms": _millis(event.server_time),
                        "offline": event.offline,
                        "cursor": event.cursor,
                        "message": message_json(event.message),
                    }
                )
                messages += 1
                if save is not None:
                    save_media(client, save, event.message)
            if args.count is not None and messages >= args.count:
                return


def save_media(client: Client, folder: Path, message: Message) -> None:
    """Downloads an image or file message's media into ``folder`` under its name made
    safe; a failed download is reported on stderr and the feed goes on."""
    if not isinstance(message, (ImageMessage, FileMessage)):
        return
    path = unique_path(folder, message.file_name, message.media_id)
    try:
        media = finish(client.start_download_to_file(message.media_id, path))
    except TransferCancelledError:
        raise
    except CourierError as e:
        print(f"courier: could not save {message.media_id}: {e}", file=sys.stderr)
        return
    emit(saved_json(media, path))


def flags(
    server: Any = argparse.SUPPRESS, token: Any = argparse.SUPPRESS, json: Any = argparse.SUPPRESS
) -> argparse.ArgumentParser:
    """The global flags, accepted before or after the command as with the Rust CLI:
    with their defaults on the top parser, without (SUPPRESS) on each command's."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server", default=server, help="the server's URL (COURIER_SERVER; https:// for TLS)"
    )
    common.add_argument("--token", default=token, help="your token (COURIER_TOKEN)")
    common.add_argument("--json", action="store_true", default=json, help="accepted: output is JSON")
    return common


def parser() -> argparse.ArgumentParser:
    # argparse prints usage errors on stderr and exits with status 2, as the contract asks.
    top = argparse.ArgumentParser(
        prog="courier.interop",
        description="The Python interop client of courier.",
        parents=[flags(os.environ.get("COURIER_SERVER", "http://127.0.0.1:50051"),
                       os.environ.get("COURIER_TOKEN"), False)],
    )
    commands = top.add_subparsers(dest="command", required=True)

    upload = commands.add_parser("upload", parents=[flags()], help="upload a file and print its media record")
    upload.add_argument("path")
    upload.add_argument("--image", action="store_true", help="upload it as an image")
    upload.add_argument(
        "--resume", action="store_true",
        help="a resumable upload, continued from PATH.courier-upload when there is one",
    )
    upload.add_argument(
        "--stop-after-parts", type=_positive, metavar="N",
        help="with --resume: stop after writing N parts, without committing",
    )
    upload.set_defaults(run=cmd_upload)

    send = commands.add_parser("send", parents=[flags()], help="send a message to a peer or a channel")
    where = send.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", metavar="PEER")
    where.add_argument("--channel", metavar="CH")
    what = send.add_mutually_exclusive_group(required=True)
    what.add_argument("--text")
    what.add_argument("--image", metavar="PATH")
    what.add_argument("--file", metavar="PATH")
    what.add_argument("--media-id", metavar="ID")
    send.add_argument("--offline", action="store_true", help="keep it for an offline peer")
    send.add_argument(
        "--client-message-id", metavar="ID",
        help="the ID that makes a repeated send deliver nothing again (default: a new one)",
    )
    send.set_defaults(run=cmd_send)

    for name, run, text in [
        ("join", cmd_join, "join a channel"),
        ("leave", cmd_leave, "leave a channel"),
        ("members", cmd_members, "list a channel's members"),
    ]:
        command = commands.add_parser(name, parents=[flags()], help=text)
        command.add_argument("channel")
        command.set_defaults(run=run)

    online = commands.add_parser("online", parents=[flags()], help="tell whether users are online")
    online.add_argument("users", nargs="+")
    online.set_defaults(run=cmd_online)

    listen = commands.add_parser("listen", parents=[flags()], help="print every message as it arrives")
    listen.add_argument("--save", metavar="DIR", help="download images and files into DIR")
    listen.add_argument("--count", type=_positive, metavar="N", help="exit after N messages")
    listen.add_argument(
        "--after", type=_natural, default=0, metavar="CURSOR",
        help="first the messages after this cursor that the server still holds",
    )
    listen.set_defaults(run=cmd_listen)

    download = commands.add_parser("download", parents=[flags()], help="download an image or file by media ID")
    download.add_argument("media_id")
    download.add_argument("-o", "--output", required=True, metavar="PATH")
    download.set_defaults(run=cmd_download)

    thumbnail = commands.add_parser(
        "thumbnail", parents=[flags()], help="save the server's thumbnail of an image"
    )
    thumbnail.add_argument("media_id")
    thumbnail.add_argument(
        "--max-edge", type=_positive, default=320, metavar="N",
        help="the most pixels on the longer side, rounded up by the server to 96, 320 or 640",
    )
    thumbnail.add_argument("-o", "--output", required=True, metavar="PATH")
    thumbnail.set_defaults(run=cmd_thumbnail)

    url = commands.add_parser(
        "url", parents=[flags()], help="print a signed HTTP link to an image or file (or its thumbnail)"
    )
    url.add_argument("media_id")
    url.add_argument(
        "--max-edge", type=_natural, default=0, metavar="N",
        help="a link to the thumbnail of at most N pixels on the longer side (0, the default: the object)",
    )
    url.add_argument(
        "--ttl", type=_duration, metavar="DURATION",
        help="how long the link works (60s, 10m, 1h); default: the server's (5 minutes)",
    )
    url.set_defaults(run=cmd_url)

    delete = commands.add_parser("delete", parents=[flags()], help="delete one of your uploads")
    delete.add_argument("media_id")
    delete.set_defaults(run=cmd_delete)
    return top


def _natural(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def _duration(text: str) -> float:
    """Seconds of ``60s``, ``10m``, ``1h``, ``500ms`` (or a bare number of seconds)."""
    number = text.rstrip("mshMSH")
    unit = text[len(number):].lower() or "s"
    try:
        seconds = float(number) * _UNITS[unit]
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (60s, 10m, 1h)") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return seconds


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def report(error: CourierError) -> None:
    """A refused call: the contract's error line on stdout, a sentence on stderr."""
    emit({"error": {"code": error.code.name, "reason": error.reason, "message": error.message}})
    print(f"courier: {error}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the exit status."""
    top = parser()
    args = top.parse_args(argv)
    if args.command == "upload" and args.stop_after_parts is not None and not args.resume:
        top.error("--stop-after-parts needs --resume")  # exits 2
    run: Callable[[Client, argparse.Namespace], None] = args.run
    try:
        if not args.token:
            raise UnauthenticatedError(
                "no token: pass --token or set COURIER_TOKEN "
                "(courier-server token --user NAME mints one)"
            )
        with Client(args.server, args.token) as client:
            run(client, args)
    except PeerUnreachableError as e:
        emit({"message_id": e.message_id, "state": "unreachable"})
        print(f"courier: {e}", file=sys.stderr)
        return 1
    except CourierError as e:
        report(e)
        return 1
    except KeyboardInterrupt:
        if args.command == "listen":
            return 0
        print("courier: cancelled", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
