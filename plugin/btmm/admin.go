package btmm

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/openbtmm/btmm/plugin/pkg/adminapi"
	"github.com/openbtmm/btmm/plugin/pkg/keyfile"
	"github.com/openbtmm/btmm/plugin/pkg/shared"
	"github.com/openbtmm/btmm/plugin/pkg/store"
	"github.com/openbtmm/btmm/plugin/pkg/tsigauth"
)

// The admin socket (package adminapi) is shared across reloads like the
// store: the new instance takes the socket over, and the last to shut
// down closes it.
var admins shared.Registry[*adminServer]

// adminServer serves the admin API for the current instance of a zone.
type adminServer struct {
	path string
	ln   net.Listener
	srv  *http.Server
	cur  atomic.Pointer[Btmm]
}

// defaultRotateOverlap is how long a replaced key still works when the
// operator does not say.
const defaultRotateOverlap = 24 * time.Hour

func acquireAdmin(b *Btmm) error {
	_, _, err := admins.Acquire(b.adminPath, func() (*adminServer, error) {
		a, err := listenAdmin(b.adminPath)
		if err != nil {
			return nil, err
		}
		a.cur.Store(b)
		return a, nil
	}, func(a *adminServer) error {
		if other := a.cur.Load(); other.zone != b.zone {
			return fmt.Errorf("admin socket %s already serves zone %s", b.adminPath, other.zone)
		}
		a.cur.Store(b)
		return nil
	})
	return err
}

func releaseAdmin(path string) error {
	return admins.Release(path, func(a *adminServer) error {
		err := a.srv.Close()
		os.Remove(a.path)
		return err
	})
}

// listenAdmin opens the socket at path, readable and writable by this
// process's user alone: it is made under a temporary name, given its mode,
// then renamed, so that it is never reachable with looser permissions. A
// socket left by a server that died is replaced; one with a live server
// behind it is not.
func listenAdmin(path string) (*adminServer, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s is in use by another server", path)
	}
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.%d", filepath.Base(path), os.Getpid()))
	os.Remove(tmp)
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	a := &adminServer{path: path, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/users", a.list)
	mux.HandleFunc("GET /v1/users/{name}", a.get)
	mux.HandleFunc("POST /v1/users", a.add)
	mux.HandleFunc("POST /v1/users/{name}/rotate", a.rotate)
	mux.HandleFunc("DELETE /v1/users/{name}", a.revoke)
	mux.HandleFunc("POST /v1/import", a.importKeys)
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go a.srv.Serve(ln)
	log.Infof("admin socket %s", path)
	return a, nil
}

// httpError is an error with the status to answer it with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &httpError{status, fmt.Sprintf(format, args...)}
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		status := http.StatusInternalServerError
		var he *httpError
		if errors.As(err, &he) {
			status = he.status
		}
		w.WriteHeader(status)
		v = adminapi.Error{Error: err.Error()}
	}
	json.NewEncoder(w).Encode(v)
}

func decode(r *http.Request, v any) error {
	if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<16)).Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "reading the request: %v", err)
	}
	return nil
}

// userName turns what the operator typed (alice, or
// alice.members.example.com.) into a user's domain: exactly one label
// below the zone, the name that quotas count by (store.Owner).
func (b *Btmm) userName(s string) (string, error) {
	name := dns.CanonicalName(s)
	if !dns.IsSubDomain(b.zone, name) {
		name = dns.CanonicalName(strings.TrimSuffix(s, ".") + "." + b.zone)
	}
	if _, ok := dns.IsDomainName(name); !ok || name == b.zone || store.Owner(b.zone, name) != name {
		return "", errorf(http.StatusBadRequest, "%q is not a user's domain: a user is one label below %s (alice.%s)", s, b.zone, b.zone)
	}
	return name, nil
}

func (a *adminServer) list(w http.ResponseWriter, r *http.Request) {
	b := a.cur.Load()
	enc := json.NewEncoder(w)
	w.Header().Set("Content-Type", "application/jsonl")
	for _, k := range b.keys {
		enc.Encode(adminapi.User{Name: k.Name, Algorithm: bindName(k.Algorithm), Source: adminapi.SourceKeyFile})
	}
	err := b.store.ForEachUser(func(u store.User) bool {
		return enc.Encode(apiUser(u, false)) == nil
	})
	if err != nil {
		log.Errorf("admin: listing users: %v", err)
	}
}

func (a *adminServer) get(w http.ResponseWriter, r *http.Request) {
	b := a.cur.Load()
	u, err := b.lookupUser(r.PathValue("name"))
	reply(w, u, err)
}

// lookupUser finds a user in the key file or the store.
func (b *Btmm) lookupUser(s string) (adminapi.User, error) {
	name, err := b.userName(s)
	if err != nil {
		return adminapi.User{}, err
	}
	if k, ok := b.keys[name]; ok {
		return adminapi.User{Name: name, Algorithm: bindName(k.Algorithm), Source: adminapi.SourceKeyFile}, nil
	}
	u, ok, err := b.store.User(name)
	if err != nil {
		return adminapi.User{}, err
	}
	if !ok {
		return adminapi.User{}, errorf(http.StatusNotFound, "no user %s", name)
	}
	return apiUser(u, false), nil
}

func (a *adminServer) add(w http.ResponseWriter, r *http.Request) {
	b := a.cur.Load()
	var req adminapi.AddRequest
	if err := decode(r, &req); err != nil {
		reply(w, nil, err)
		return
	}
	u, err := b.addUser(req)
	reply(w, u, err)
}

func (b *Btmm) addUser(req adminapi.AddRequest) (adminapi.User, error) {
	name, err := b.userName(req.Name)
	if err != nil {
		return adminapi.User{}, err
	}
	if _, ok := b.keys[name]; ok {
		return adminapi.User{}, errorf(http.StatusConflict, "user %s is in the key file already", name)
	}
	if _, ok, err := b.store.User(name); err != nil || ok {
		if err == nil {
			err = errorf(http.StatusConflict, "user %s exists already: rotate its key, or revoke it first", name)
		}
		return adminapi.User{}, err
	}
	k, err := newKey(name, req.Algorithm, req.Secret, "")
	if err != nil {
		return adminapi.User{}, err
	}
	u := store.User{Key: k}
	if err := b.store.PutUser(u); err != nil {
		return adminapi.User{}, err
	}
	log.Infof("admin: added user %s (%s)", name, bindName(k.Algorithm))
	return apiUser(u, true), nil
}

func (a *adminServer) rotate(w http.ResponseWriter, r *http.Request) {
	b := a.cur.Load()
	req := adminapi.RotateRequest{Overlap: adminapi.Duration(defaultRotateOverlap)}
	if err := decode(r, &req); err != nil {
		reply(w, nil, err)
		return
	}
	u, err := b.rotateUser(r.PathValue("name"), req)
	reply(w, u, err)
}

func (b *Btmm) rotateUser(s string, req adminapi.RotateRequest) (adminapi.User, error) {
	name, err := b.userName(s)
	if err != nil {
		return adminapi.User{}, err
	}
	if req.Overlap < 0 {
		return adminapi.User{}, errorf(http.StatusBadRequest, "a negative overlap")
	}
	if _, ok := b.keys[name]; ok {
		return adminapi.User{}, errorf(http.StatusConflict, "user %s is in the key file: change its key there and reload", name)
	}
	old, ok, err := b.store.User(name)
	if err != nil {
		return adminapi.User{}, err
	}
	if !ok {
		return adminapi.User{}, errorf(http.StatusNotFound, "no user %s", name)
	}
	k, err := newKey(name, req.Algorithm, req.Secret, old.Key.Algorithm)
	if err != nil {
		return adminapi.User{}, err
	}
	// One previous key at most: a rotation during another's overlap ends
	// the older key's at once.
	u := store.User{Key: k}
	if req.Overlap > 0 {
		prev := old.Key
		u.Previous, u.Until = &prev, b.now().Add(time.Duration(req.Overlap)).Truncate(time.Second)
	}
	if err := b.store.PutUser(u); err != nil {
		return adminapi.User{}, err
	}
	log.Infof("admin: rotated the key of user %s, the previous one accepted for %v", name, time.Duration(req.Overlap))
	return apiUser(u, true), nil
}

func (a *adminServer) revoke(w http.ResponseWriter, r *http.Request) {
	b := a.cur.Load()
	keep := r.URL.Query().Get("records") == "keep"
	res, err := b.revokeUser(r.PathValue("name"), keep)
	reply(w, res, err)
}

// revokeUser removes a user from the store: its key stops working with
// the next message (every plugin looks keys up per message), the llq
// plugin ends its LLQs on the store's event, and its records go in one
// transaction after that, unless keep says to leave them to their leases.
// A crash between the two leaves the records to expire.
func (b *Btmm) revokeUser(s string, keep bool) (adminapi.RevokeReply, error) {
	name, err := b.userName(s)
	if err != nil {
		return adminapi.RevokeReply{}, err
	}
	if _, ok := b.keys[name]; ok {
		return adminapi.RevokeReply{}, errorf(http.StatusConflict, "user %s is in the key file: remove it there and reload", name)
	}
	found, err := b.store.DeleteUser(name)
	if err != nil {
		return adminapi.RevokeReply{}, err
	}
	if !found {
		return adminapi.RevokeReply{}, errorf(http.StatusNotFound, "no user %s", name)
	}
	res := adminapi.RevokeReply{Name: name, LeftToExpire: keep}
	if !keep {
		_, err = b.store.Update(func(tx store.Tx) (err error) {
			res.RecordNames, err = tx.DeleteTree(name)
			return err
		})
		if err != nil {
			return res, fmt.Errorf("user %s is revoked, but its records were not removed (they will expire): %w", name, err)
		}
	}
	log.Infof("admin: revoked user %s; %d names of its records removed", name, res.RecordNames)
	return res, nil
}

// importBatch is how many users an import writes per store transaction.
const importBatch = 10000

func (a *adminServer) importKeys(w http.ResponseWriter, r *http.Request) {
	b := a.cur.Load()
	keys, err := keyfile.Parse(r.Body, "the imported key file")
	if err != nil {
		reply(w, nil, errorf(http.StatusBadRequest, "%v", err))
		return
	}
	res, err := b.importKeys(keys)
	reply(w, res, err)
}

// importKeys adds a user for each key (keyfile.Parse refuses a name twice),
// in batches, skipping the users there already. Every name is checked
// before anything is written.
func (b *Btmm) importKeys(keys []keyfile.Key) (adminapi.ImportReply, error) {
	var res adminapi.ImportReply
	for _, k := range keys {
		if name, err := b.userName(k.Name); err != nil || name != k.Name {
			return res, errorf(http.StatusBadRequest, "line %d: key %s is not a user's domain one label below %s", k.Line, k.Name, b.zone)
		}
	}
	batch := make([]store.User, 0, min(len(keys), importBatch))
	flush := func() error {
		if err := b.store.PutUsers(batch); err != nil {
			return err
		}
		res.Added += len(batch)
		batch = batch[:0]
		return nil
	}
	for _, k := range keys {
		_, inFile := b.keys[k.Name]
		_, inStore, err := b.store.User(k.Name)
		if err != nil {
			return res, err
		}
		if inFile || inStore {
			res.Existed++
			if len(res.Skipped) < 100 {
				res.Skipped = append(res.Skipped, k.Name)
			}
			continue
		}
		k.Line = 0
		if batch = append(batch, store.User{Key: k}); len(batch) == importBatch {
			if err := flush(); err != nil {
				return res, err
			}
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	log.Infof("admin: imported %d users, skipped %d there already", res.Added, res.Existed)
	return res, nil
}

// newKey makes the key named name: the secret given (base64), or a random
// one as long as the algorithm's hash. alg is BIND's name or miekg's, and
// defaults to def, then to hmac-sha256.
func newKey(name, alg, secret, def string) (keyfile.Key, error) {
	if alg == "" {
		alg = def
	}
	if alg == "" {
		alg = dns.HmacSHA256
	}
	canon, ok := keyfile.Algorithm(alg)
	if !ok {
		return keyfile.Key{}, errorf(http.StatusBadRequest, "unknown algorithm %q", alg)
	}
	if secret == "" {
		raw := make([]byte, tsigauth.MACLen(canon))
		rand.Read(raw)
		secret = base64.StdEncoding.EncodeToString(raw)
	} else if raw, err := base64.StdEncoding.DecodeString(secret); err != nil || len(raw) == 0 || len(raw) > 255 {
		return keyfile.Key{}, errorf(http.StatusBadRequest, "the secret must be 1 to 255 octets in base64")
	}
	return keyfile.Key{Name: name, Algorithm: canon, Secret: secret}, nil
}

func apiUser(u store.User, withSecret bool) adminapi.User {
	a := adminapi.User{Name: u.Name(), Algorithm: bindName(u.Key.Algorithm), Source: adminapi.SourceStore}
	if withSecret {
		a.Secret = u.Key.Secret
	}
	if u.Previous != nil {
		until := u.Until.UTC()
		a.PreviousUntil = &until
	}
	return a
}

func bindName(alg string) string { return keyfile.BINDAlgorithm(alg) }
