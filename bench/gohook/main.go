// A reference webhook for bench/admission.py: Go's standard library only
// (net/http, crypto/tls, encoding/json), doing the list edit ep-webhook does
// on an annotated `vllm serve` command, so /mutate can be compared with what
// a plain Go webhook costs on the same machine, TLS settings and bodies.
//
//	gohook CERT_DIR PORT
//
// It decodes the AdmissionReview, reads ep.enabled and the GPU limit, drops
// the command's tensor/data/expert-parallel flags, appends
// --enable-expert-parallel --tensor-parallel-size 1 --data-parallel-size N
// and answers a base64 JSON patch; fewer than 2 GPUs is denied. No shell
// scripts or policy: it is a floor for the list case, not a second
// implementation. With GOHOOK_UNDO set in its environment it also writes an
// undo record like ep-webhook's (the annotation vllm-ep-webhook.io/original:
// the container, the original command, and a sha256 of the new one), so that
// what the API server does with the webhook's answer is the same too.
package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

type review struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Request    *request       `json:"request"`
	Response   map[string]any `json:"response,omitempty"`
}

type request struct {
	UID    string         `json:"uid"`
	Object map[string]any `json:"object"`
}

var owned = map[string]bool{
	"--tensor-parallel-size": true, "-tp": true, "--data-parallel-size": true, "-dp": true,
}

func child(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		next, ok := m[k].(map[string]any)
		if !ok {
			return nil
		}
		m = next
	}
	return m
}

func edit(command []any, gpus int) []any {
	out := make([]any, 0, len(command)+5)
	for i := 0; i < len(command); i++ {
		word, _ := command[i].(string)
		name, _, hasValue := strings.Cut(word, "=")
		switch {
		case owned[name] && !hasValue:
			i++ // the value follows
		case owned[name], name == "--enable-expert-parallel", name == "-ep":
		default:
			out = append(out, command[i])
		}
	}
	return append(out, "--enable-expert-parallel", "--tensor-parallel-size", "1",
		"--data-parallel-size", strconv.Itoa(gpus))
}

func decide(obj map[string]any) map[string]any {
	answer := map[string]any{"allowed": true}
	annotations := child(obj, "metadata", "annotations")
	if enabled, _ := annotations["ep.enabled"].(string); !strings.EqualFold(enabled, "true") {
		return answer
	}
	model := child(obj, "spec", "predictor", "model")
	limits := child(model, "resources", "limits")
	var gpus int
	switch v := limits["nvidia.com/gpu"].(type) {
	case string:
		gpus, _ = strconv.Atoi(v)
	case float64:
		gpus = int(v)
	}
	if gpus < 2 {
		return map[string]any{"allowed": false, "status": map[string]any{
			"status": "Failure", "code": 403, "reason": "Forbidden",
			"message": "ep.enabled needs at least 2 GPUs in resources.limits; request more GPUs or remove ep.enabled"}}
	}
	command, _ := model["command"].([]any)
	newCommand := edit(command, gpus)
	ops := []map[string]any{{"op": "replace", "path": "/spec/predictor/model/command", "value": newCommand}}
	if os.Getenv("GOHOOK_UNDO") != "" {
		applied, _ := json.Marshal(newCommand)
		sum := sha256.Sum256(applied)
		record, _ := json.Marshal(map[string]any{"container": "/spec/predictor/model", "command": command,
			"args": nil, "applied": "sha256:" + hex.EncodeToString(sum[:])})
		ops = append(ops, map[string]any{"op": "add", "path": "/metadata/annotations/vllm-ep-webhook.io~1original",
			"value": string(record)})
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		panic(err)
	}
	answer["patchType"] = "JSONPatch"
	answer["patch"] = patch // []byte marshals as base64
	answer["warnings"] = []string{"set --data-parallel-size " + strconv.Itoa(gpus)}
	return answer
}

func mutate(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 3<<20))
	var rev review
	if err != nil || json.Unmarshal(body, &rev) != nil || rev.Request == nil {
		http.Error(w, `{"error":"not an AdmissionReview"}`, http.StatusBadRequest)
		return
	}
	answer := decide(rev.Request.Object)
	answer["uid"] = rev.Request.UID
	out, err := json.Marshal(review{APIVersion: rev.APIVersion, Kind: "AdmissionReview", Response: answer})
	if err != nil {
		panic(err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

func main() {
	dir, port := os.Args[1], os.Args[2]
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/mutate", mutate)
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"status":"ready"}`)) })
	server := &http.Server{
		Addr:    "127.0.0.1:" + port,
		Handler: mux,
		TLSConfig: &tls.Config{
			MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}, NextProtos: []string{"http/1.1"},
		},
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}, // HTTP/1.1 like the Python servers
	}
	log.Fatal(server.ListenAndServeTLS("", ""))
}
