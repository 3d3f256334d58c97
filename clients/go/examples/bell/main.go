// A Bell pair from Go: list backends, run a Sampler job (OpenQASM 3), follow WatchJob to
// the terminal update, read the counts from the typed result, and read an error's reason.
// Usage: bell HOST:PORT
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	pb "runtime-gateway/clients/go/runtimegatewayv1"
)

func main() {
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(address string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := grpc.DialContext(ctx, address, grpc.WithInsecure()) // grpc-go 1.33: no credentials/insecure
	if err != nil {
		return err
	}
	defer conn.Close()
	backendService := pb.NewBackendServiceClient(conn)
	jobService := pb.NewJobServiceClient(conn)

	listed, err := backendService.ListBackends(ctx, &pb.ListBackendsRequest{})
	if err != nil {
		return err
	}
	bell := `OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; h q[0]; cx q[0], q[1]; c = measure q;`
	inputs, _ := json.Marshal(map[string]interface{}{
		"pubs": []interface{}{[]interface{}{bell, nil, 1000}}, "version": 2, "options": map[string]interface{}{},
	})
	submitted, err := jobService.RunJob(ctx, &pb.RunJobRequest{
		ProgramId: "sampler", Backend: "ibmq_qasm_simulator", InputsJson: string(inputs),
	})
	if err != nil {
		return err
	}
	jobID := submitted.Job.Id

	// The stream ends after the terminal update; with IncludeResult it carries the result.
	stream, err := jobService.WatchJob(ctx, &pb.WatchJobRequest{JobId: jobID, IncludeResult: true})
	if err != nil {
		return err
	}
	var last *pb.JobStateUpdate
	for {
		message, err := stream.Recv()
		if err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		if state := message.Update.GetState(); state.GetTerminal() {
			last = state
		}
	}
	typed := last.GetTypedResult()
	if typed.GetKind() != pb.ResultKind_RESULT_KIND_SAMPLER {
		return fmt.Errorf("no sampler result: %s", typed.GetUndecodedReason())
	}
	counts := typed.PubResults[0].GetSampler().Registers[0].Counts // for example {"00": 503, "11": 497}

	reason := ""
	_, err = jobService.GetJob(ctx, &pb.GetJobRequest{JobId: "no-such-job"})
	for _, detail := range status.Convert(err).Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok {
			reason = info.Reason // "JOB_NOT_FOUND"
		}
	}

	names := []string{}
	for _, backend := range listed.Backends {
		names = append(names, backend.Name)
	}
	out, _ := json.Marshal(map[string]interface{}{
		"backends": names, "jobId": jobID, "state": last.Job.State.String(), "counts": counts, "reason": reason,
	})
	fmt.Println(string(out))
	return nil
}
