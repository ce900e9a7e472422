-- Recording an inspection takes the patient's earliest waiting visit. With only the patient's
-- index and the queue's, the planner may combine the two, or walk the queue in order, whenever
-- its statistics overestimate a patient's visits (a whole benchmark run left them at ~400 a
-- patient): then every inspection reads the whole waiting list (96,000 entries, 10-18 ms).
-- This index answers the lookup alone, in the queue's order, whatever the statistics say.
create index visits_waiting on visits (patient_id, registered_on, token, site)
    where inspected_at is null;
