package session

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// FileSigner makes the short file-access signature other PVPipe services accept on file
// URLs. The format, so that any service holding secrets.file_signature can verify it:
//
//	signature = "<userId>.<expUnix>.<mac>"
//	mac       = base64url-nopad( HMAC-SHA256(file_signature, "pvauth-file-v1." + userId + "." + expUnix)[:16] )
//
// It is valid while expUnix (seconds) is in the future. 128 truncated MAC bits keep it
// short enough for a URL parameter without making forgery practical.
type FileSigner struct{ key []byte }

// NewFileSigner uses secrets.file_signature.
func NewFileSigner(key string) *FileSigner { return &FileSigner{key: []byte(key)} }

func (f *FileSigner) mac(payload string) string {
	m := hmac.New(sha256.New, f.key)
	m.Write([]byte("pvauth-file-v1." + payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// Sign binds the signature to a user until exp.
func (f *FileSigner) Sign(userID int64, exp time.Time) string {
	payload := strconv.FormatInt(userID, 10) + "." + strconv.FormatInt(exp.Unix(), 10)
	return payload + "." + f.mac(payload)
}

// ErrBadSignature covers malformed, forged and expired signatures alike.
var ErrBadSignature = errors.New("invalid or expired signature")

// Verify returns the user and expiry of a valid, unexpired signature.
func (f *FileSigner) Verify(sig string, now time.Time) (int64, time.Time, error) {
	parts := strings.Split(sig, ".")
	if len(parts) != 3 || len(sig) > 128 {
		return 0, time.Time{}, ErrBadSignature
	}
	uid, err1 := strconv.ParseInt(parts[0], 10, 64)
	exp, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil || uid <= 0 {
		return 0, time.Time{}, ErrBadSignature
	}
	want := f.mac(parts[0] + "." + parts[1])
	if subtle.ConstantTimeCompare([]byte(want), []byte(parts[2])) != 1 {
		return 0, time.Time{}, ErrBadSignature
	}
	t := time.Unix(exp, 0).UTC()
	if !now.Before(t) {
		return 0, time.Time{}, ErrBadSignature
	}
	return uid, t, nil
}
