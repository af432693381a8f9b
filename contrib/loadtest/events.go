package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// sseEvent is one server-sent event of GET /confirmation/{id}/events.
type sseEvent struct {
	Name string
	Data string
}

// eventStream reads server-sent events from one open response.
type eventStream struct {
	resp *http.Response
	rd   *bufio.Reader
}

// openEvents opens the events stream of a confirmation on its own connection (hc).
func openEvents(ctx context.Context, hc *http.Client, url, bearer string) (*eventStream, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		return nil, fmt.Errorf("HTTP %d (%s)", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return &eventStream{resp: resp, rd: bufio.NewReader(resp.Body)}, nil
}

// next returns the next event, skipping comment lines (the heartbeats).
func (s *eventStream) next() (sseEvent, error) {
	var ev sseEvent
	var data []string
	for {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if ev.Name != "" || len(data) > 0 {
				ev.Data = strings.Join(data, "\n")
				return ev, nil
			}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event:"):
			ev.Name = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
}

// nextStatus returns the status of the next event.
func (s *eventStream) nextStatus() (string, error) {
	ev, err := s.next()
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if ev.Name != "status" || json.Unmarshal([]byte(ev.Data), &st) != nil || st.Status == "" {
		return "", fmt.Errorf("unexpected event %q %q", ev.Name, ev.Data)
	}
	return st.Status, nil
}

func (s *eventStream) close() { s.resp.Body.Close() }

// streamClient is an HTTP client whose every stream gets a connection of its own.
func streamClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:              nil,
		DialContext:        (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConns:       0,
		DisableCompression: true,
		DisableKeepAlives:  true,
	}}
}

// initiated is what POST /confirmation/initiate answers.
type initiated struct {
	ConfirmationID string `json:"confirmationId"`
	Challenge      string `json:"challenge"`
	MatchCode      string `json:"matchCode"`
}

func (r *runner) initiate(ctx context.Context, d *device) (*initiated, string) {
	status, raw, err := r.api.postJSON(ctx, r.api.public+pathConfirmInitiate, d.u.Tokens.AccessToken, map[string]any{
		"actionType": "loadtest", "actionPayload": map[string]any{"worker": d.Fingerprint, "amount": 12.5},
	})
	if l := statusLabel("initiate", status, err); l != "" {
		return nil, l
	}
	var in initiated
	if decodeData(raw, &in) != nil || in.ConfirmationID == "" || in.Challenge == "" {
		return nil, "initiate: no challenge"
	}
	return &in, ""
}

// approve signs the challenge with d's key and posts it (with the match code, if any).
func (r *runner) approve(ctx context.Context, d *device, in *initiated) string {
	sig, err := d.signChallenge(in.Challenge)
	if err != nil {
		return "initiate: bad challenge"
	}
	body := map[string]string{"deviceId": d.ID, "signedChallenge": sig}
	if in.MatchCode != "" {
		body["matchCode"] = in.MatchCode
	}
	status, raw, err := r.api.postJSON(ctx, r.api.public+pathConfirmationBase+in.ConfirmationID+"/verify", d.u.Tokens.AccessToken, body)
	if l := statusLabel("verify", status, err); l != "" {
		return l
	}
	var st struct {
		Status  string `json:"status"`
		Receipt string `json:"receipt"`
	}
	if decodeData(raw, &st) != nil || st.Status != "approved" || st.Receipt == "" {
		return "verify: not approved"
	}
	return ""
}

// confirmationEvents: a round trip as an initiating screen sees it = initiate, open the
// events stream (first event: pending), approve on the device, receive "approved".
func (r *runner) confirmationEvents(ctx context.Context) (*result, error) {
	ds, err := r.workerDevices(ctx)
	if err != nil {
		return nil, fmt.Errorf("confirmation_events setup: %w", err)
	}
	clients := make([]*http.Client, len(ds))
	for i := range clients {
		// One keep-alive connection per worker for its streams; a stream ends with the
		// terminal event, so the connection is reused.
		clients[i] = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1, DisableCompression: true}}
	}
	if l, _ := r.eventsRoundTrip(ctx, clients[0], ds[0]); l != "" {
		return nil, fmt.Errorf("confirmation_events setup: a first round trip failed (%s)%s", l, rateLimitHint(l))
	}
	r.logf("confirmation_events: POST %sinitiate + GET …/{id}/events + POST …/{id}/verify, until the stream says approved; %d users", pathConfirmationBase, len(ds))
	res := runLoad(ctx, "confirmation_events", r.opt.Concurrency, r.opt.Duration, func(ctx context.Context, w int) opResult {
		l, lat := r.eventsRoundTrip(ctx, clients[w], ds[w])
		return opResult{Latency: lat, Err: l}
	})
	res.Notes = append(res.Notes, fmt.Sprintf("confirmation_events: %.1f round trips/s over %d connections; a row is one round trip = initiate + events stream + verify, until the approved event",
		float64(res.OK())/res.Elapsed.Seconds(), r.opt.Concurrency))
	return res, nil
}

func (r *runner) eventsRoundTrip(ctx context.Context, hc *http.Client, d *device) (string, time.Duration) {
	t0 := time.Now()
	in, l := r.initiate(ctx, d)
	if l != "" {
		return l, time.Since(t0)
	}
	s, err := openEvents(ctx, hc, r.api.public+pathConfirmationBase+in.ConfirmationID+"/events", d.u.Tokens.AccessToken)
	if err != nil {
		return "events: " + err.Error(), time.Since(t0)
	}
	defer s.close()
	if st, err := s.nextStatus(); err != nil || st != "pending" {
		return "events: first event not pending", time.Since(t0)
	}
	if l := r.approve(ctx, d, in); l != "" {
		return l, time.Since(t0)
	}
	if st, err := s.nextStatus(); err != nil || st != "approved" {
		return "events: no approved event", time.Since(t0)
	}
	lat := time.Since(t0)
	// The stream ends after the terminal event; read to EOF so the connection is reused.
	if _, err := s.next(); err == nil {
		return "events: stream not closed after approved", lat
	}
	return "", lat
}

// streams: -streams event streams open at once on one server, each on its own
// connection; then every confirmation is approved (by -c workers) and each stream must
// see its own approval within a second. A row is one approval's delivery delay: from
// sending the verify to the approved event on its stream.
func (r *runner) streams(ctx context.Context) (*result, error) {
	n := r.opt.Streams
	if n <= 0 {
		return nil, errors.New("streams: -streams must be positive")
	}
	items, err := r.initiateStreams(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("streams setup: %w", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t0 := time.Now()
	if err := r.openStreams(ctx, sctx, items); err != nil {
		return nil, fmt.Errorf("streams setup: %w", err)
	}
	r.logf("streams: %d event streams open (%s to open them), one connection each", n, time.Since(t0).Round(time.Millisecond))
	var mem memSample
	if r.opt.PID > 0 {
		mem = sampleMem(r.opt.PID, fmt.Sprintf("%d streams open", n))
	}
	var wg sync.WaitGroup
	for _, it := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer it.s.close()
			if st, err := it.s.nextStatus(); err == nil && st == "approved" {
				it.got <- time.Now()
			}
			close(it.got)
		}()
	}
	next := atomic.Int64{}
	res := runLoad(ctx, "streams", r.opt.Concurrency, time.Hour, func(ctx context.Context, _ int) opResult {
		i := int(next.Add(1)) - 1
		if i >= n {
			return opResult{Stop: true}
		}
		it := items[i]
		sent := time.Now()
		if l := r.approve(ctx, it.d, it.in); l != "" {
			return opResult{Err: l}
		}
		return it.delivery(ctx, sent)
	})
	cancel()
	wg.Wait()
	res.StoppedEarly = false
	res.Notes = append(res.Notes, fmt.Sprintf("streams: %d streams open at once; a row is one approval's delivery: verify sent → approved event on its own stream (must be ≤ 1 s)", n))
	if mem.When != "" {
		if mem.Err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("streams: server RSS with %d streams open: %v", n, mem.Err))
		} else {
			res.Notes = append(res.Notes, fmt.Sprintf("streams: server RSS with %d streams open: %s", n, fmtKiB(mem.RSS)))
		}
	}
	return res, nil
}

// streamItem is one confirmation of the streams scenario and its event stream; got
// receives when the stream saw the approval (closed without it otherwise).
type streamItem struct {
	d   *device
	in  *initiated
	s   *eventStream
	got chan time.Time
}

// initiateStreams initiates n confirmations, spread over the worker devices.
func (r *runner) initiateStreams(ctx context.Context, n int) ([]*streamItem, error) {
	ds, err := r.workerDevices(ctx)
	if err != nil {
		return nil, err
	}
	items := make([]*streamItem, n)
	return items, forEach(ctx, n, r.opt.Concurrency, func(ctx context.Context, i int) error {
		d := ds[i%len(ds)]
		in, l := r.initiate(ctx, d)
		if l != "" {
			return fmt.Errorf("initiate %d: %s%s", i, l, rateLimitHint(l))
		}
		items[i] = &streamItem{d: d, in: in, got: make(chan time.Time, 1)}
		return nil
	})
}

// openStreams opens the event stream of every item (living as long as sctx), each on
// its own connection, and reads its first event; on failure every stream is closed.
func (r *runner) openStreams(ctx, sctx context.Context, items []*streamItem) error {
	hc := streamClient()
	err := forEach(ctx, len(items), 64, func(ctx context.Context, i int) error {
		it := items[i]
		s, err := openEvents(sctx, hc, r.api.public+pathConfirmationBase+it.in.ConfirmationID+"/events", it.d.u.Tokens.AccessToken)
		if err != nil {
			return fmt.Errorf("stream %d: %w", i, err)
		}
		if st, err := s.nextStatus(); err != nil || st != "pending" {
			s.close()
			return fmt.Errorf("stream %d: first event not pending (%v)", i, err)
		}
		it.s = s
		return nil
	})
	if err != nil {
		for _, it := range items {
			if it != nil && it.s != nil {
				it.s.close()
			}
		}
	}
	return err
}

// delivery waits for the approval sent at sent to reach the item's stream.
func (it *streamItem) delivery(ctx context.Context, sent time.Time) opResult {
	select {
	case at, ok := <-it.got:
		if !ok {
			return opResult{Err: "stream: no approved event"}
		}
		lat := at.Sub(sent)
		if lat > time.Second {
			return opResult{Latency: lat, Err: "stream: approved event later than 1 s"}
		}
		return opResult{Latency: lat}
	case <-time.After(5 * time.Second):
		return opResult{Latency: 5 * time.Second, Err: "stream: no approved event within 5 s"}
	case <-ctx.Done():
		return opResult{Err: "cancelled"}
	}
}
