// MediaURL: signed plain-HTTP links to stored media, for loaders that speak HTTP and
// not gRPC (an <img> tag, a platform image loader, a video player, a CDN).

package courier

import (
	"context"
	"math"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/courier-rtm/courier/client/go/internal/pb"
)

// MediaURLOptions are the settings of a link; the zero value links to the object
// itself for the server's default life.
type MediaURLOptions struct {
	// MaxEdge is 0 for a link to the object itself, or a size in pixels for a link to
	// its thumbnail of at most that many pixels on the longer side (rounded up by the
	// server to 96, 320 or 640, as Thumbnail does).
	MaxEdge int
	// Lifetime is how long the link should work: 0 for the server's default (5
	// minutes); the server cuts it to its maximum (1 hour), to the media's own expiry
	// and to the caller's token's expiry.
	Lifetime time.Duration
}

// MediaURL mints a signed HTTP link to mediaID (or to its thumbnail) and returns it
// with the time after which the server refuses it (HTTP 410). The link is a
// capability: whoever holds the URL can GET the bytes, with no token, until it
// expires — single byte ranges, ETag and If-None-Match included (docs/http.md).
// Revoking the user, deleting the media or quarantining its content ends the link at
// once; a CDN's copy, though, outlives them. Errors: ErrNotFound for an unknown or
// expired ID, ErrMediaDeleted, ErrMediaQuarantined, ErrNotAnImage for a thumbnail link
// of a file, ErrInvalidArgument for a negative MaxEdge or Lifetime. Retried while the
// server is unavailable.
func (c *Client) MediaURL(ctx context.Context, mediaID string, opts MediaURLOptions) (string, time.Time, error) {
	if err := checkMediaID(mediaID); err != nil {
		return "", time.Time{}, err
	}
	if opts.MaxEdge < 0 {
		return "", time.Time{}, invalidArgument(nil, "MaxEdge is %d: 0 for the object, or a thumbnail size in pixels", opts.MaxEdge)
	}
	if opts.Lifetime < 0 {
		return "", time.Time{}, invalidArgument(nil, "Lifetime is %v: 0 for the server's default, or a positive duration", opts.Lifetime)
	}
	request := &pb.GetMediaUrlRequest{MediaId: mediaID, MaxEdge: int32(min(opts.MaxEdge, math.MaxInt32))}
	if opts.Lifetime > 0 {
		request.Lifetime = durationpb.New(opts.Lifetime)
	}
	response, err := retrying(c, ctx, func(ctx context.Context) (*pb.GetMediaUrlResponse, error) {
		return c.media.GetMediaUrl(ctx, request)
	})
	if err != nil {
		return "", time.Time{}, err
	}
	return response.GetUrl(), timeFromProto(response.GetExpireTime()), nil
}
