package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"

	"github.com/golang-jwt/jwt/v5"
)

// clientKeys verifies client (SignalR and native stream) tokens: HS256 with
// the access key, and RS256/ES256 with a PEM public key and/or a JWKS file.
type clientKeys struct {
	hmac    []byte
	rsa     map[string]*rsa.PublicKey   // by kid; "" for the PEM key
	ecdsa   map[string]*ecdsa.PublicKey // by kid; "" for the PEM key
	methods []string
	parser  *jwt.Parser
}

// enabled reports whether client tokens are required at all.
func (k *clientKeys) enabled() bool { return len(k.methods) > 0 }

func loadClientKeys(accessKey, publicKeyFile, jwksFile string) (*clientKeys, error) {
	k := &clientKeys{rsa: map[string]*rsa.PublicKey{}, ecdsa: map[string]*ecdsa.PublicKey{}}
	if accessKey != "" {
		k.hmac = []byte(accessKey)
	}
	if publicKeyFile != "" {
		pem, err := os.ReadFile(publicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("-jwt-public-key: %w", err)
		}
		if key, err := jwt.ParseRSAPublicKeyFromPEM(pem); err == nil {
			k.rsa[""] = key
		} else if key, err := jwt.ParseECPublicKeyFromPEM(pem); err == nil {
			k.ecdsa[""] = key
		} else {
			return nil, fmt.Errorf("-jwt-public-key %s: not a PEM RSA or EC public key", publicKeyFile)
		}
	}
	if jwksFile != "" {
		if err := k.loadJWKS(jwksFile); err != nil {
			return nil, fmt.Errorf("-jwks-file %s: %w", jwksFile, err)
		}
	}
	if k.hmac != nil {
		k.methods = append(k.methods, jwt.SigningMethodHS256.Alg())
	}
	if len(k.rsa) > 0 {
		k.methods = append(k.methods, jwt.SigningMethodRS256.Alg())
	}
	if len(k.ecdsa) > 0 {
		k.methods = append(k.methods, jwt.SigningMethodES256.Alg())
	}
	k.parser = jwt.NewParser(jwt.WithValidMethods(k.methods), jwt.WithExpirationRequired(), jwt.WithLeeway(accessTokenLeeway))
	return k, nil
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func (k *clientKeys) loadJWKS(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return fmt.Errorf("malformed JWKS: %w", err)
	}
	if len(set.Keys) == 0 {
		return errors.New("the JWKS holds no keys")
	}
	for i, key := range set.Keys {
		switch key.Kty {
		case "RSA":
			n, err1 := b64Int(key.N)
			e, err2 := b64Int(key.E)
			if err := errors.Join(err1, err2); err != nil || !e.IsInt64() {
				return fmt.Errorf("key %d (%q): bad RSA parameters", i, key.Kid)
			}
			k.rsa[key.Kid] = &rsa.PublicKey{N: n, E: int(e.Int64())}
		case "EC":
			if key.Crv != "P-256" {
				return fmt.Errorf("key %d (%q): curve %q is not supported (ES256 needs P-256)", i, key.Kid, key.Crv)
			}
			x, err1 := b64Int(key.X)
			y, err2 := b64Int(key.Y)
			if err := errors.Join(err1, err2); err != nil {
				return fmt.Errorf("key %d (%q): bad EC parameters", i, key.Kid)
			}
			k.ecdsa[key.Kid] = &ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}
		default:
			return fmt.Errorf("key %d (%q): key type %q is not supported (RSA or EC)", i, key.Kid, key.Kty)
		}
	}
	return nil
}

func b64Int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, errors.New("bad base64url integer")
	}
	return new(big.Int).SetBytes(b), nil
}

// keyFor picks the verification key for a token by its algorithm and kid.
func (k *clientKeys) keyFor(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	switch t.Method.Alg() {
	case jwt.SigningMethodHS256.Alg():
		return k.hmac, nil
	case jwt.SigningMethodRS256.Alg():
		if key, ok := k.rsa[kid]; ok {
			return key, nil
		}
		if key, ok := k.rsa[""]; ok {
			return key, nil
		}
	case jwt.SigningMethodES256.Alg():
		if key, ok := k.ecdsa[kid]; ok {
			return key, nil
		}
		if key, ok := k.ecdsa[""]; ok {
			return key, nil
		}
	}
	return nil, fmt.Errorf("no key for algorithm %s and kid %q", t.Method.Alg(), kid)
}

// parse verifies a client token and returns its claims.
func (k *clientKeys) parse(tok string) (jwt.MapClaims, error) {
	claims := jwt.MapClaims{}
	if _, err := k.parser.ParseWithClaims(tok, claims, k.keyFor); err != nil {
		return nil, fmt.Errorf("%w: invalid access token: %v", errUnauthorized, err)
	}
	return claims, nil
}
