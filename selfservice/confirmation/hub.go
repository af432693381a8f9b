package confirmation

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// PollInterval is how often the hub re-reads the watched confirmations to see changes
// made through other replicas (they share only the database). One query per tick for
// all of them, whatever the number of streams.
var PollInterval = 250 * time.Millisecond

// pollBatch bounds the ids of one query.
const pollBatch = 500

// Subscription is woken (C receives) whenever its confirmation may have changed.
// Wake-ups coalesce: C has room for one, so a slow reader never blocks the hub.
type Subscription struct {
	C  <-chan struct{}
	c  chan struct{}
	id string
	h  *hub
}

// Close ends the subscription.
func (s *Subscription) Close() { s.h.unsubscribe(s) }

// Seen tells the hub which state of the confirmation the subscriber has read, so that
// the poller's first look at it wakes nobody unless it has changed since. Without it the
// first poll wakes every new subscriber, which would re-read all at once.
func (s *Subscription) Seen(c *Confirmation) {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	// A version already known is kept: it may be older than c, and the subscribers that
	// read it must still be woken when the poller sees the newer one.
	if _, ok := s.h.seen[s.id]; !ok && s.h.subs[s.id] != nil {
		s.h.seen[s.id] = Version{Status: c.Status, UpdatedAt: c.UpdatedAt}
	}
}

// hub fans changes out to subscribers: a change made through this replica wakes them at
// once (notify); one poller goroutine, running only while someone subscribes, catches
// changes made through other replicas by comparing each watched row's status and
// updated_at with what it saw last. A stream costs no goroutine of its own beyond its
// request's and holds no database connection between reads.
type hub struct {
	load func(ctx context.Context, ids []string) (map[string]Version, error)

	mu      sync.Mutex
	subs    map[string]map[*Subscription]struct{}
	seen    map[string]Version
	polling bool
	polls   atomic.Int64
}

func newHub(load func(ctx context.Context, ids []string) (map[string]Version, error)) *hub {
	return &hub{load: load, subs: map[string]map[*Subscription]struct{}{}, seen: map[string]Version{}}
}

func (h *hub) subscribe(id string) *Subscription {
	c := make(chan struct{}, 1)
	s := &Subscription{C: c, c: c, id: id, h: h}
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.subs[id]
	if m == nil {
		m = map[*Subscription]struct{}{}
		h.subs[id] = m
	}
	m[s] = struct{}{}
	if !h.polling {
		h.polling = true
		go h.poll()
	}
	return s
}

func (h *hub) unsubscribe(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m := h.subs[s.id]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(h.subs, s.id)
			delete(h.seen, s.id)
		}
	}
}

// notify wakes the subscribers of id.
func (h *hub) notify(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.wakeLocked(id)
}

func (h *hub) wakeLocked(id string) {
	for s := range h.subs[id] {
		select {
		case s.c <- struct{}{}:
		default:
		}
	}
}

// poll runs while there are subscribers; it stops by itself when the last one leaves.
func (h *hub) poll() {
	t := time.NewTicker(PollInterval)
	defer t.Stop()
	for range t.C {
		h.mu.Lock()
		if len(h.subs) == 0 {
			h.polling = false
			h.mu.Unlock()
			return
		}
		ids := make([]string, 0, len(h.subs))
		for id := range h.subs {
			ids = append(ids, id)
		}
		h.mu.Unlock()
		for i := 0; i < len(ids); i += pollBatch {
			batch := ids[i:min(i+pollBatch, len(ids))]
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			vs, err := h.load(ctx, batch)
			cancel()
			h.polls.Add(1)
			if err != nil {
				slog.Debug("confirmation events: polling failed", "error", err)
				continue
			}
			h.mu.Lock()
			for _, id := range batch {
				v, ok := vs[id]
				if !ok || h.subs[id] == nil {
					continue
				}
				if prev, seen := h.seen[id]; !seen || prev.Status != v.Status || !prev.UpdatedAt.Equal(v.UpdatedAt) {
					// First sight (no subscriber said what it read) wakes too: the
					// stream re-reads and drops repeats.
					h.seen[id] = v
					h.wakeLocked(id)
				}
			}
			h.mu.Unlock()
		}
	}
}

type atomicDuration struct{ v atomic.Int64 }

func (a *atomicDuration) Store(d time.Duration) { a.v.Store(int64(d)) }
func (a *atomicDuration) Load() time.Duration   { return time.Duration(a.v.Load()) }
