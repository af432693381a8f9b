package biometric_test

import "github.com/pvpipe/pvauth/internal/testkeys"

// The device keys and signing helpers shared with the other device-key tests.
type (
	ktKeyMaterial = testkeys.KeyMaterial
	ktSigner      = testkeys.Signer
	ktFormat      = testkeys.Format
)

var (
	ktKeySet       = testkeys.KeySet
	ktSigners      = testkeys.Signers
	ktMustDER      = testkeys.MustDER
	ktPEM          = testkeys.PEM
	ktKeyFormats   = testkeys.KeyFormats
	ktSigEncodings = testkeys.SigEncodings
	ktSign         = testkeys.Sign
	ktSignB64      = testkeys.SignB64
	ktB64          = testkeys.B64
)
