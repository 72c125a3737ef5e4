from django.urls import path

from . import api, views

app_name = "reports"

urlpatterns = [
    path("reports/", views.report_page, name="page"),
    path("metrics/", views.metrics, name="metrics"),
    path("reports/jobs/<uuid:job_id>/download/", views.download, name="download"),
    path("api/reports/", api.report_list, name="api-reports"),
    path("api/reports/jobs/", api.job_list, name="api-jobs"),
    path("api/reports/jobs/<uuid:job_id>/", api.job_detail, name="api-job"),
    path("api/reports/jobs/<uuid:job_id>/cancel/", api.job_cancel, name="api-job-cancel"),
    path("api/reports/jobs/<uuid:job_id>/retry/", api.job_retry, name="api-job-retry"),
    path("api/reports/schedules/", api.schedule_list, name="api-schedules"),
    path("api/reports/schedules/<int:schedule_id>/", api.schedule_detail, name="api-schedule"),
    path("api/reports/schedules/<int:schedule_id>/pause/", api.schedule_pause, name="api-schedule-pause"),
    path("api/reports/schedules/<int:schedule_id>/resume/", api.schedule_resume, name="api-schedule-resume"),
]
