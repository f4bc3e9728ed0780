// Package courier is the Go client of courier, a self-hostable messaging service
// where users send each other, and channels, text, raw, image and file messages, with
// images and files uploaded once, in chunks, and sent by media ID.
//
//	alice, err := courier.Dial(ctx, "http://127.0.0.1:50051", courier.WithToken(token))
//	media, err := alice.UploadFile(ctx, "cat.png", courier.UploadOptions{Kind: courier.Image})
//	receipt, err := alice.SendPeerMessage(ctx, "bob", media.ImageMessage(), courier.SendOptions{Offline: true})
//
// # Layout
//
//   - [Client]: the connection, made by [Dial] with options ([Option]), or by
//     [DialReplicas] over several replicas, calls spread round robin; a deadline on
//     every unary call (10 s) and retries with backoff for calls that are safe to
//     repeat, on another replica when one went away (client.go).
//   - Transfers: [Client.StartUpload] and [Client.StartDownloadFile] and their kin
//     return a [Transfer] at once, with a [RequestID], the [Progress] so far and
//     Cancel; [Client.Upload], [Client.DownloadFile], ... wait for it. At most 9 run at
//     once per client (transfer.go, upload.go, download.go).
//   - Messages: [TextMessage], [RawMessage], [ImageMessage], [FileMessage], sent with
//     [Client.SendPeerMessage] and [Client.SendChannelMessage]; channels and presence
//     (message.go); [Media] records, thumbnails and [Client.DeleteMedia] (media.go);
//     signed HTTP links, [Client.MediaURL] (media_url.go).
//   - [Client.Subscribe]: a [Subscription] whose events ([ReceivedMessage], [Ready],
//     [Disconnected], [Reconnected]) arrive on a channel; it reconnects by itself
//     (subscribe.go).
//   - Errors: every call fails with an [Error] carrying the gRPC code and the
//     ErrorInfo reason, matching one sentinel per kind with errors.Is:
//     [ErrNotFound], [ErrTooLarge], [ErrTooManyTransfers], ... (errors.go).
//   - [SafeFileName], [UniquePath]: where to save received files (names.go).
//
// Every call takes a context.Context first: cancelling it cancels the call, or the
// transfer it started.
package courier
