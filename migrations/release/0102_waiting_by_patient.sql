-- A discharge takes the patient's earliest waiting entry: this index finds it alone, in queue
-- order, so the planner never reads the whole queue to find one patient's entry (see
-- inspection's 0103_waiting_by_patient.sql for what the other indexes allowed).
create index release_queue_waiting on release_queue (patient_id, id) where released_at is null;
