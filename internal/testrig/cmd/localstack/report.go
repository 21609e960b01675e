package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/internal/ddbstore"
	"decnet-attribution/internal/deadletter"
	"decnet-attribution/internal/testrig/devstack"
)

// identityItem is the sort key of the identity-level item of StatesTable.
const identityItem = "#identity"

// printReport prints the states in StatesTable and the alerts that reached
// the local alerts queue.
func printReport(ctx context.Context, w io.Writer, stack *devstack.Stack) error {
	cfg := devstack.AWSConfig(stack.Endpoint, stack.Region)
	if err := printStates(ctx, w, dynamodb.NewFromConfig(cfg), stack); err != nil {
		return err
	}
	return printAlerts(ctx, w, sqs.NewFromConfig(cfg), stack.AlertsQueue.URL)
}

func printStates(ctx context.Context, w io.Writer, db *dynamodb.Client, stack *devstack.Stack) error {
	table := stack.TableName(devstack.StatesTableID)
	primitives := map[string][]string{} // identity → primitives
	hasIdentityItem := map[string]bool{}
	p := dynamodb.NewScanPaginator(db, &dynamodb.ScanInput{
		TableName:            aws.String(table),
		ProjectionExpression: aws.String("identity_uuid, #p"),
		ExpressionAttributeNames: map[string]string{
			"#p": "primitive",
		},
		ConsistentRead: aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("scan %s: %w", table, err)
		}
		for _, item := range page.Items {
			id, prim := stringAttr(item, "identity_uuid"), stringAttr(item, "primitive")
			if prim == identityItem {
				hasIdentityItem[id] = true
				continue
			}
			primitives[id] = append(primitives[id], prim)
		}
	}

	store := ddbstore.New(db, ddbstore.Tables{
		Identities:   stack.TableName(devstack.IdentitiesTableID),
		Observations: stack.TableName(devstack.ObservationsTableID),
		States:       table,
	}, 0)
	identities := make([]string, 0, len(primitives))
	for id := range primitives {
		identities = append(identities, id)
	}
	sort.Strings(identities)

	fmt.Fprintf(w, "\n== states (%s)\n", table)
	if len(identities) == 0 {
		fmt.Fprintln(w, "   (none)")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "   IDENTITY\tATTACKER\tPRIMITIVE\tSTATE\tCURRENT VALUE\tCONFIDENCE\tCOUNT")
	var suspicions []string
	for _, id := range identities {
		prims := primitives[id]
		sort.Strings(prims)
		records, err := store.LoadSeries(ctx, id, prims, true)
		if err != nil {
			return err
		}
		ident, err := store.LoadIdentity(ctx, id, true)
		if err != nil {
			return err
		}
		for _, prim := range prims {
			rec := records[prim]
			if rec == nil || rec.Orphaned(ident.Membership) {
				continue
			}
			state := attribution.State{State: "-", CurrentValue: attribution.Null}
			if rec.Current != nil {
				state = *rec.Current
			}
			fmt.Fprintf(tw, "   %s\t%s\t%s\t%s\t%s\t%.3f\t%d\n",
				short(id, 13), rec.AttackerUUID, prim, state.State, short(string(state.CurrentValue), 40), state.Confidence, state.ObservationCount)
		}
		if hasIdentityItem[id] {
			rec, err := store.LoadIdentity(ctx, id, true)
			if err != nil {
				return err
			}
			if len(rec.Flagged) > 0 || rec.Suspicions > 0 {
				suspicions = append(suspicions, fmt.Sprintf("   %s: multi_actor primitives %v, multi_actor_suspected raised %d time(s)", id, rec.Flagged, rec.Suspicions))
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range suspicions {
		fmt.Fprintln(w, s)
	}
	return nil
}

// printAlerts drains the alerts queue, which the template's alert rule
// delivers to in place of the SNS topic.
func printAlerts(ctx context.Context, w io.Writer, q *sqs.Client, url string) error {
	fmt.Fprintf(w, "\n== alerts delivered by the EventBridge rule (local alerts queue, standing in for the SNS topic)\n")
	n := 0
	for {
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:            aws.String(url),
			MaxNumberOfMessages: 10,
			WaitTimeSeconds:     1,
		})
		if err != nil {
			return fmt.Errorf("receive alerts: %w", err)
		}
		if len(out.Messages) == 0 {
			break
		}
		for _, m := range out.Messages {
			n++
			fmt.Fprintf(w, "   %s\n", describeAlert(aws.ToString(m.Body)))
			if _, err := q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				return fmt.Errorf("delete alert: %w", err)
			}
		}
	}
	if n == 0 {
		fmt.Fprintln(w, "   (none)")
	}
	return nil
}

// printDeadLetters drains the observation dead-letter queue, where the
// function sends messages it rejects as invalid, with the reason.
func printDeadLetters(ctx context.Context, w io.Writer, stack *devstack.Stack) error {
	url := stack.QueueURL(devstack.ObservationDeadLetterQueueID)
	q := sqs.NewFromConfig(devstack.AWSConfig(stack.Endpoint, stack.Region))
	for {
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:              aws.String(url),
			MaxNumberOfMessages:   10,
			MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			return fmt.Errorf("receive dead letters: %w", err)
		}
		if len(out.Messages) == 0 {
			return nil
		}
		for _, m := range out.Messages {
			attr := func(name string) string {
				if v, ok := m.MessageAttributes[name]; ok {
					return aws.ToString(v.StringValue)
				}
				return "-"
			}
			fmt.Fprintf(w, "   dead-lettered %s (field %s): %s\n",
				attr(deadletter.AttrSourceMessageID), attr(deadletter.AttrField), attr(deadletter.AttrReason))
			if _, err := q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				return fmt.Errorf("delete dead letter: %w", err)
			}
		}
	}
}

// describeAlert renders one EventBridge event as a line.
func describeAlert(body string) string {
	var ev struct {
		DetailType string `json:"detail-type"`
		Detail     struct {
			AttackerUUID     string   `json:"attacker_uuid"`
			IdentityUUID     string   `json:"identity_uuid"`
			Primitive        string   `json:"primitive"`
			Primitives       []string `json:"primitives"`
			OldState         *string  `json:"old_state"`
			NewState         string   `json:"new_state"`
			CurrentValue     any      `json:"current_value"`
			Confidence       float64  `json:"confidence"`
			ObservationCount int      `json:"observation_count"`
		} `json:"detail"`
	}
	if err := json.Unmarshal([]byte(body), &ev); err != nil {
		return "unreadable alert: " + short(body, 200)
	}
	d := ev.Detail
	who := d.AttackerUUID
	if who == "" {
		who = d.IdentityUUID
	}
	switch ev.DetailType {
	case attribution.EventStateChanged:
		old := "(none)"
		if d.OldState != nil {
			old = *d.OldState
		}
		value, _ := json.Marshal(d.CurrentValue)
		return fmt.Sprintf("state_changed          %s  %s  %s → %s  value %s  confidence %.3f  count %d",
			who, d.Primitive, old, d.NewState, short(string(value), 40), d.Confidence, d.ObservationCount)
	case attribution.EventMultiActorSuspected:
		return fmt.Sprintf("multi_actor_suspected  %s  primitives %s  confidence %.3f", who, strings.Join(d.Primitives, ", "), d.Confidence)
	default:
		return fmt.Sprintf("%s: %s", ev.DetailType, short(body, 200))
	}
}

func stringAttr(item map[string]ddbtypes.AttributeValue, name string) string {
	if s, ok := item[name].(*ddbtypes.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
