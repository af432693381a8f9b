package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Device and confirmation paths of the contract.
const (
	pathDeviceChallenge  = "/api/v1/auth/devices/register/challenge"
	pathDeviceVerify     = "/api/v1/auth/devices/register/verify"
	pathMobileChallenge  = "/api/v1/auth/mobile/challenge"
	pathMobileBiometric  = "/api/v1/auth/mobile/biometric"
	pathConfirmInitiate  = "/api/v1/auth/confirmation/initiate"
	pathConfirmationBase = "/api/v1/auth/confirmation/" // + {id}/verify, {id}/status
)

// device is an enrolled user with one registered ES256 device key.
type device struct {
	u           *user
	key         *ecdsa.PrivateKey
	ID          string
	Fingerprint string
}

// signChallenge signs the SHA-256 of the base64-decoded challenge with the device key
// (ASN.1 DER) and returns it base64-encoded, as a mobile app does.
func (d *device) signChallenge(challenge string) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(challenge)
	if err != nil {
		return "", fmt.Errorf("challenge is not base64: %w", err)
	}
	sum := sha256.Sum256(raw)
	sig, err := ecdsa.SignASN1(rand.Reader, d.key, sum[:])
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// challengeAnswer is the data of the register and mobile challenge calls.
type challengeAnswer struct {
	Challenge string `json:"challenge"`
	SessionID string `json:"sessionId"`
	DeviceID  string `json:"deviceId"`
}

// registerDevice creates a P-256 key and registers it (challenge + signed verify) as a
// mobile device of u with a fingerprint of its own.
func (a *api) registerDevice(ctx context.Context, u *user, n int) (*device, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	d := &device{u: u, key: key, Fingerprint: fmt.Sprintf("loadtest-%s-%d-%s", runID, n, randomHex(6))}
	status, raw, err := a.postJSON(ctx, a.public+pathDeviceChallenge, u.Tokens.AccessToken, map[string]string{
		"deviceName": fmt.Sprintf("loadtest device %d", n), "deviceType": "mobile",
		"deviceFingerprint": d.Fingerprint, "publicKey": base64.StdEncoding.EncodeToString(spki), "keyAlgorithm": "ES256",
	})
	var ch challengeAnswer
	if err := expectData("POST "+pathDeviceChallenge, http.StatusOK, status, raw, err, &ch); err != nil {
		return nil, err
	}
	sig, err := d.signChallenge(ch.Challenge)
	if err != nil {
		return nil, err
	}
	status, raw, err = a.postJSON(ctx, a.public+pathDeviceVerify, u.Tokens.AccessToken, map[string]string{"sessionId": ch.SessionID, "signedChallenge": sig})
	var reg struct {
		Success  bool   `json:"success"`
		DeviceID string `json:"deviceId"`
	}
	if err := expectData("POST "+pathDeviceVerify, http.StatusOK, status, raw, err, &reg); err != nil {
		return nil, err
	}
	if !reg.Success || reg.DeviceID == "" {
		return nil, fmt.Errorf("device registration of %s: %s", u.Email, snippet(raw))
	}
	d.ID = reg.DeviceID
	return d, nil
}

// workerDevices enrols one identity per worker and registers one device for each; the
// biometric and confirmation scenarios share them (created on first use).
func (r *runner) workerDevices(ctx context.Context) ([]*device, error) {
	r.devMu.Lock()
	defer r.devMu.Unlock()
	if len(r.devices) >= r.opt.Concurrency {
		return r.devices[:r.opt.Concurrency], nil
	}
	n := r.opt.Concurrency - len(r.devices)
	more := make([]*device, n)
	err := forEach(ctx, n, r.opt.Concurrency, func(ctx context.Context, i int) error {
		k := r.nextN()
		u, err := r.api.enrol(ctx, k)
		if err != nil {
			return err
		}
		more[i], err = r.api.registerDevice(ctx, u, k)
		return err
	})
	if err != nil {
		return nil, err
	}
	r.devices = append(r.devices, more...)
	r.logf("devices: %d identities enrolled (password + TOTP), one ES256 device registered for each", len(r.devices))
	return r.devices, nil
}

// biometric: a full biometric login = POST /mobile/challenge + POST /mobile/biometric
// with the challenge signed by the worker's device key. One row = one login.
func (r *runner) biometric(ctx context.Context) (*result, error) {
	res, err := r.perDevice(ctx, "biometric", "login",
		"biometric: POST "+pathMobileChallenge+" + POST "+pathMobileBiometric+" (ES256, DER); %d devices, one per worker", r.biometricLogin)
	if err != nil {
		return nil, err
	}
	res.Notes = append(res.Notes, fmt.Sprintf("biometric: %.1f logins/s over %d connections; a row is one login = 2 requests (%.1f HTTP requests/s); latency = both round trips, the client's signing not included",
		float64(res.OK())/res.Elapsed.Seconds(), r.opt.Concurrency, 2*res.Rate()))
	return res, nil
}

// perDevice runs op with each worker's device until the duration ends, after one op
// before the clock starts to fail fast on a broken setup; what names one op in that
// error, and logLine (with %d for the number of devices) is logged at the start.
func (r *runner) perDevice(ctx context.Context, name, what, logLine string, op func(context.Context, *device) (string, time.Duration)) (*result, error) {
	ds, err := r.workerDevices(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s setup: %w", name, err)
	}
	if l, _ := op(ctx, ds[0]); l != "" {
		return nil, fmt.Errorf("%s setup: a first %s failed (%s)%s", name, what, l, rateLimitHint(l))
	}
	r.logf(logLine, len(ds))
	return runLoad(ctx, name, r.opt.Concurrency, r.opt.Duration, func(ctx context.Context, w int) opResult {
		l, lat := op(ctx, ds[w])
		return opResult{Latency: lat, Err: l}
	}), nil
}

// biometricLogin runs one login and returns its error label ("" on success) and the
// time spent in the two requests.
func (r *runner) biometricLogin(ctx context.Context, d *device) (string, time.Duration) {
	t0 := time.Now()
	status, raw, err := r.api.postJSON(ctx, r.api.public+pathMobileChallenge, "", map[string]string{"deviceFingerprint": d.Fingerprint})
	lat := time.Since(t0)
	if l := statusLabel("challenge", status, err); l != "" {
		return l, lat
	}
	var ch challengeAnswer
	if decodeData(raw, &ch) != nil || ch.Challenge == "" || ch.SessionID == "" {
		return "challenge: no challenge", lat
	}
	sig, err := d.signChallenge(ch.Challenge)
	if err != nil {
		return "challenge: bad challenge", lat
	}
	t1 := time.Now()
	status, raw, err = r.api.postJSON(ctx, r.api.public+pathMobileBiometric, "", map[string]string{"sessionId": ch.SessionID, "signedChallenge": sig})
	lat += time.Since(t1)
	if l := statusLabel("biometric", status, err); l != "" {
		return l, lat
	}
	var br struct {
		Success bool     `json:"success"`
		Tokens  tokenSet `json:"tokens"`
	}
	if decodeData(raw, &br) != nil || !br.Success || br.Tokens.AccessToken == "" {
		return "biometric: no tokens", lat
	}
	return "", lat
}

// confirmation: a round trip = POST /confirmation/initiate + POST /confirmation/{id}/verify
// (signed with the worker's device key) + GET /confirmation/{id}/status. One row = one
// round trip.
func (r *runner) confirmation(ctx context.Context) (*result, error) {
	res, err := r.perDevice(ctx, "confirmation", "round trip",
		"confirmation: POST "+pathConfirmationBase+"initiate + POST …/{id}/verify (ES256) + GET …/{id}/status; %d users, one device each", r.confirmRoundTrip)
	if err != nil {
		return nil, err
	}
	res.Notes = append(res.Notes, fmt.Sprintf("confirmation: %.1f round trips/s over %d connections; a row is one round trip = 3 requests (%.1f HTTP requests/s); latency = the three round trips, the client's signing not included",
		float64(res.OK())/res.Elapsed.Seconds(), r.opt.Concurrency, 3*res.Rate()))
	return res, nil
}

func (r *runner) confirmRoundTrip(ctx context.Context, d *device) (string, time.Duration) {
	bearer := d.u.Tokens.AccessToken
	t0 := time.Now()
	status, raw, err := r.api.postJSON(ctx, r.api.public+pathConfirmInitiate, bearer, map[string]any{
		"actionType": "loadtest", "actionPayload": map[string]any{"worker": d.Fingerprint},
	})
	lat := time.Since(t0)
	if l := statusLabel("initiate", status, err); l != "" {
		return l, lat
	}
	var in struct {
		ConfirmationID string `json:"confirmationId"`
		Challenge      string `json:"challenge"`
	}
	if decodeData(raw, &in) != nil || in.ConfirmationID == "" || in.Challenge == "" {
		return "initiate: no challenge", lat
	}
	sig, err := d.signChallenge(in.Challenge)
	if err != nil {
		return "initiate: bad challenge", lat
	}
	base := r.api.public + pathConfirmationBase + in.ConfirmationID
	t1 := time.Now()
	status, raw, err = r.api.postJSON(ctx, base+"/verify", bearer, map[string]string{"deviceId": d.ID, "signedChallenge": sig})
	if l := statusLabel("verify", status, err); l != "" {
		return l, lat + time.Since(t1)
	}
	var st struct {
		Success bool   `json:"success"`
		Status  string `json:"status"`
	}
	if decodeData(raw, &st) != nil || !st.Success || st.Status != "approved" {
		return "verify: not approved", lat + time.Since(t1)
	}
	status, raw, err = r.api.do(ctx, http.MethodGet, base+"/status", bearer, "", nil)
	lat += time.Since(t1)
	if l := statusLabel("status", status, err); l != "" {
		return l, lat
	}
	st.Status = ""
	if decodeData(raw, &st) != nil || st.Status != "approved" {
		return "status: not approved", lat
	}
	return "", lat
}

// forEach runs fn(i) for i in [0, n) with up to par at a time and returns the first error.
func forEach(ctx context.Context, n, par int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan int)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range min(max(par, 1), n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}
