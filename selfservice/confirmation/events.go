package confirmation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// writeWindow is how long one write to an event stream may take; the server's
// WriteTimeout does not apply to streams (it would cut them after a minute).
const writeWindow = 30 * time.Second

// events streams the status as server-sent events: one "status" event at once, one per
// change, the final one (approved, rejected, expired) and the end of the stream; a
// comment line every heartbeat interval. The request's goroutine does all of it: it
// waits on its subscription (woken by this replica's changes at once and by the hub's
// poller for other replicas'), its expiry timer and its heartbeat ticker, and reads the
// confirmation only when woken.
func (h *Handler) events(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	ctx := r.Context()
	uid, err := session.UserID(r)
	if err != nil {
		return err
	}
	sub := h.svc.Subscribe(ps.ByName("id"))
	defer sub.Close()
	// Read after subscribing: a change in between wakes the subscription.
	c, err := h.svc.Get(ctx, uid, ps.ByName("id"))
	if err != nil {
		return err
	}
	sub.Seen(c)
	st, err := openStream(w, h.svc)
	if err != nil {
		return err
	}
	if !st.emit(ctx, c) {
		return nil
	}
	h.follow(ctx, st, sub, uid, c)
	return nil
}

// follow sends c's changes on st until c is final, the client leaves or the server
// shuts down.
func (h *Handler) follow(ctx context.Context, st *eventStream, sub *Subscription, uid int64, c *Confirmation) {
	expiry := time.NewTimer(time.Until(c.ExpiresAt))
	defer expiry.Stop()
	hb := time.NewTicker(h.svc.HeartbeatInterval())
	defer hb.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.svc.Done():
			return
		case <-hb.C:
			if !st.write([]byte(": keep-alive\n\n")) {
				return
			}
			continue
		case <-sub.C:
		case <-expiry.C:
			// Re-read: an approval may have landed in the last moment.
			expiry.Reset(100 * time.Millisecond)
		}
		cur, err := h.svc.Get(ctx, uid, c.ID)
		if err != nil {
			// A failed read (database away) is retried at the next wake-up or tick of
			// the expiry timer; a vanished confirmation ends the stream.
			if errors.Is(err, ErrConfirmationNotFound) {
				return
			}
			continue
		}
		if !st.emit(ctx, cur) {
			return
		}
	}
}

// eventStream is an open server-sent events response.
type eventStream struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	svc  *Service
	last []byte // the last status sent, without its receipt
}

// openStream sets the deadlines and writes the stream's header; an error comes before
// anything is written.
func openStream(w http.ResponseWriter, svc *Service) (*eventStream, error) {
	rc := http.NewResponseController(w)
	// No read deadline: the request has no body, and the server's read deadline expiring
	// under net/http's background read would cancel the request's context mid-stream.
	// The write deadline moves with each write (the server's WriteTimeout would cut the
	// stream). Both must be settable through every middleware's ResponseWriter.
	if err := errors.Join(rc.SetReadDeadline(time.Time{}), rc.SetWriteDeadline(time.Now().Add(writeWindow))); err != nil {
		return nil, x.ErrInternal.WithCause(err)
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return &eventStream{w: w, rc: rc, svc: svc}, nil
}

// write sends b at once; it reports whether the client is still there.
func (s *eventStream) write(b []byte) bool {
	_ = s.rc.SetWriteDeadline(time.Now().Add(writeWindow))
	if _, err := s.w.Write(b); err != nil {
		return false
	}
	return s.rc.Flush() == nil
}

// emit sends c when it differs from what was sent last; it reports whether the stream
// goes on.
func (s *eventStream) emit(ctx context.Context, c *Confirmation) bool {
	now := time.Now()
	v, err := s.svc.View(c, now)
	if err != nil {
		slog.ErrorContext(ctx, "confirmation events: view", "error", err, "request_id", x.RequestID(ctx))
		return false
	}
	receipt := v.Receipt
	v.Receipt = "" // the receipt's signature differs at every signing: compare without it
	key, _ := json.Marshal(v)
	if !bytes.Equal(key, s.last) {
		s.last = key
		v.Receipt = receipt
		data, _ := json.Marshal(v)
		var buf bytes.Buffer
		buf.WriteString("event: status\ndata: ")
		buf.Write(data)
		buf.WriteString("\n\n")
		if !s.write(buf.Bytes()) {
			return false
		}
	}
	return !c.Final(now)
}
