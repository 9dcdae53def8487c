// Command kstatus prints what kstatus — both the upstream sigs.k8s.io/cli-utils and Flux's
// fork — computes for Kubernetes objects, so tests can check our status conventions against
// the code GitOps tools actually run (Flux health checks use the fork, others upstream).
//
// Input on stdin: one JSON object, a List (kind ending in "List" with items), or a JSON array.
// Output: one JSON line per object. A Compute error is reported in its line, never fatal,
// so one odd object does not hide the verdicts on the others.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	flux "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	upstream "sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type line struct {
	Kind      string  `json:"kind"`
	Namespace string  `json:"namespace"`
	Name      string  `json:"name"`
	Upstream  verdict `json:"upstream"`
	Flux      verdict `json:"flux"`
}

// asVerdict folds a Compute error into the verdict: the status names match kstatus' own
// ("Unknown" when it could not decide) and the message carries the error.
func asVerdict(status, message string, err error) verdict {
	if err != nil {
		return verdict{Status: "Unknown", Message: "error: " + err.Error()}
	}
	return verdict{Status: status, Message: message}
}

func compute(obj map[string]any) line {
	u := &unstructured.Unstructured{Object: obj}
	l := line{Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName()}
	// Each library gets its own deep copy: neither must see what the other might have touched.
	if r, err := upstream.Compute(u.DeepCopy()); err != nil {
		l.Upstream = asVerdict("", "", err)
	} else {
		l.Upstream = asVerdict(string(r.Status), r.Message, nil)
	}
	if r, err := flux.Compute(u.DeepCopy()); err != nil {
		l.Flux = asVerdict("", "", err)
	} else {
		l.Flux = asVerdict(string(r.Status), r.Message, nil)
	}
	return l
}

// objects flattens the input: an array or a List yields its items, anything else itself.
func objects(data []byte) ([]map[string]any, error) {
	// apimachinery's decoder turns whole numbers into int64, as unstructured accessors expect
	// (encoding/json's float64 makes kstatus reject metadata.generation).
	var raw any
	if err := utiljson.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("stdin is not JSON: %w", err)
	}
	var items []any
	switch v := raw.(type) {
	case []any:
		items = v
	case map[string]any:
		kind, _ := v["kind"].(string)
		if list, ok := v["items"].([]any); ok && strings.HasSuffix(kind, "List") {
			items = list
		} else {
			items = []any{v}
		}
	default:
		return nil, fmt.Errorf("stdin holds a JSON %T, want an object or an array", raw)
	}
	out := make([]map[string]any, 0, len(items))
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("item %d is a JSON %T, want an object", i, it)
		}
		out = append(out, m)
	}
	return out, nil
}

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err == nil {
		var objs []map[string]any
		if objs, err = objects(data); err == nil {
			w := bufio.NewWriter(os.Stdout)
			enc := json.NewEncoder(w)
			for _, o := range objs {
				if err = enc.Encode(compute(o)); err != nil {
					break
				}
			}
			if ferr := w.Flush(); err == nil {
				err = ferr
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}
