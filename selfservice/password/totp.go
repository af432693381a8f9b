package password

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	qrcode "github.com/skip2/go-qrcode"
)

// TOTP parameters of the contract: RFC 6238, SHA-1, 6 digits, 30 s, ±1 step.
const (
	totpPeriod = 30
	totpSkew   = 1
)

var totpOpts = totp.ValidateOpts{Period: totpPeriod, Skew: 0, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// newTOTPKey generates a secret for account under issuer.
func newTOTPKey(issuer, account string) (*otp.Key, error) {
	return totp.Generate(totp.GenerateOpts{
		Issuer: issuer, AccountName: account, Period: totpPeriod, SecretSize: 20,
		Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
}

// matchStep returns the time step (±1 around now) whose code equals code, comparing every
// candidate in constant time. pquerna/otp does not report the step, and the step is what
// replay protection records.
func matchStep(secret, code string, now time.Time) (int64, bool) {
	if len(code) != 6 {
		return 0, false
	}
	cur := now.Unix() / totpPeriod
	var found int64
	ok := 0
	for d := int64(-totpSkew); d <= totpSkew; d++ {
		step := cur + d
		want, err := totp.GenerateCodeCustom(secret, time.Unix(step*totpPeriod, 0).UTC(), totpOpts)
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			found, ok = step, 1
		}
	}
	return found, ok == 1
}

// qrPNGDataURI renders the otpauth URL as a PNG data URI.
func qrPNGDataURI(url string) (string, error) {
	// Whole pixels per module (8): fractional modules blur the edges scanners measure.
	png, err := qrcode.Encode(url, qrcode.Medium, -8)
	if err != nil {
		return "", err
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(png), nil
}

// Recovery codes: 10 codes of 20 characters (about 99 bits) from an alphabet without
// look-alikes, shown as "xxxxx-xxxxx-xxxxx-xxxxx". They are stored as HMAC-SHA256 under a
// key derived from secrets.default and bound to the identity, so a leaked table cannot be
// searched offline without the secret.
const (
	recoveryCodeCount = 10
	recoveryCodeLen   = 20
	recoveryAlphabet  = "abcdefghjkmnpqrstuvwxyz23456789"
)

// recoveryHasher hashes recovery codes with keys derived from secrets.default: the first
// one hashes new codes; every one (and the unkeyed form of earlier versions) is tried
// when a code is used, so rotating secrets.default keeps codes working.
type recoveryHasher struct{ keys [][]byte }

func newRecoveryHasher(secrets []string) *recoveryHasher {
	keys := make([][]byte, len(secrets))
	for i, s := range secrets {
		keys[i] = hmacSHA256([]byte(s), "pvauth recovery codes v2")
	}
	return &recoveryHasher{keys: keys}
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func (h *recoveryHasher) hashWith(key []byte, identityID int64, code string) string {
	return hex.EncodeToString(hmacSHA256(key, strconv.FormatInt(identityID, 10)+":"+normalizeRecoveryCode(code)))
}

// hash is the stored form of a new code.
func (h *recoveryHasher) hash(identityID int64, code string) string {
	return h.hashWith(h.keys[0], identityID, code)
}

// candidates are the stored forms code may have: under each key, then the legacy form.
func (h *recoveryHasher) candidates(identityID int64, code string) []string {
	out := make([]string, 0, len(h.keys)+1)
	for _, k := range h.keys {
		out = append(out, h.hashWith(k, identityID, code))
	}
	legacy := sha256.Sum256([]byte("pvauth-recovery:" + normalizeRecoveryCode(code)))
	return append(out, hex.EncodeToString(legacy[:]))
}

func (h *recoveryHasher) newCodes(identityID int64) ([]string, []string, error) {
	codes := make([]string, recoveryCodeCount)
	hashes := make([]string, recoveryCodeCount)
	for i := range codes {
		var b strings.Builder
		for j := 0; j < recoveryCodeLen; j++ {
			if j > 0 && j%5 == 0 {
				b.WriteByte('-')
			}
			n, err := rand.Int(rand.Reader, big.NewInt(int64(len(recoveryAlphabet))))
			if err != nil {
				return nil, nil, err
			}
			b.WriteByte(recoveryAlphabet[n.Int64()])
		}
		codes[i] = b.String()
		hashes[i] = h.hash(identityID, codes[i])
	}
	return codes, hashes, nil
}

func normalizeRecoveryCode(code string) string {
	code = strings.ToLower(code)
	return strings.NewReplacer("-", "", " ", "").Replace(code)
}

func isTOTPCode(code string) bool {
	if len(code) != 6 {
		return false
	}
	for _, c := range code {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func newPendingToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
